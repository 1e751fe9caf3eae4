"""The one saga pattern: ordered steps, each done and recorded in one transaction (docs/sagas.md).

A saga is a :class:`SagaRun` found by its idempotency ``key`` (``get_or_create``, so one run
per key whoever starts it and however often) and a fixed list of :class:`SagaStep`. For every
step the runner, in ONE database transaction with the saga row locked, does the step's work
and appends its record ``{"step", "at", "ms", ...}`` to ``SagaRun.steps``. A process that
dies inside a step therefore leaves nothing of that step behind in the database and the next
run does it again; a recorded step is never done again. Work outside the database (a Redis
Lua call, a PUBLISH) must be idempotent, because a death between it and the commit repeats
it on the next run.

Every run of an unfinished saga counts one attempt. A saga ends ``failed`` (never to run
again, shown as failed in the admin and on the dashboard) when a step raises
:class:`SagaUnrecoverable` or when it has used its ``max_attempts``; its last error is kept
in ``detail["error"]``. Any other error leaves the saga ``running`` for the next run (a task
retry, the victory sweep, the crash scan) and is raised to the caller.

Fault injection (tests, drills): ``LIVEOPS_FAILPOINTS="<kind>.<step>.<where>,..."`` makes the
process exit at once with status 137, as ``kill -9`` would, at ``before`` (nothing of the
step done) or ``inside`` (the step's work done, its transaction not committed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from bosses.models import BossEncounter, SagaRun, SagaStatus
from core import config, metrics

logger = logging.getLogger(__name__)

FAILPOINTS_ENV = "LIVEOPS_FAILPOINTS"
FAILPOINT_EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL
FAILPOINT_PLACES = ("before", "inside")


class SagaUnrecoverable(Exception):
    """Raised by a step that knows its saga can never complete: the saga ends ``failed``."""


@dataclass(frozen=True)
class SagaStep:
    """One step: ``work(saga)`` does the step's database work and returns its record.

    ``work`` may change ``saga.detail`` and the :class:`SagaRun` columns named in ``fields``;
    they are saved with the record in the step's transaction.
    """

    name: str
    work: Callable[[SagaRun], dict[str, Any]]
    fields: tuple[str, ...] = field(default=())


def failpoint(name: str) -> None:
    """Die like ``kill -9`` if ``name`` is listed in ``$LIVEOPS_FAILPOINTS`` (fault injection)."""
    if name in config.read_list(FAILPOINTS_ENV):
        logger.warning("failpoint %s: exiting with %s", name, FAILPOINT_EXIT_STATUS)
        os._exit(FAILPOINT_EXIT_STATUS)


def saga_failpoints(*, kind: str, steps: Sequence[str]) -> list[str]:
    """Every failpoint of a saga kind, in the order a run meets them."""
    return [f"{kind}.{step}.{where}" for step in steps for where in FAILPOINT_PLACES]


def steps_done(saga: SagaRun) -> list[str]:
    """Names of the steps a saga has recorded, in order."""
    return [s.get("step", "") for s in saga.steps]


def saga_last_progress(*, saga: SagaRun) -> datetime:
    """When the saga last showed life: its start, its latest attempt or its latest step."""
    times = [saga.started_at]
    times += [datetime.fromisoformat(s["at"]) for s in saga.steps if "at" in s]
    if (saga.detail or {}).get("attempted_at"):
        times.append(datetime.fromisoformat(saga.detail["attempted_at"]))
    return max(times)


def saga_run(
    *,
    key: str,
    kind: str,
    boss: BossEncounter,
    fight: int,
    steps: Sequence[SagaStep],
    max_attempts: int,
    defaults: dict[str, Any] | None = None,
    finish: Callable[[SagaRun, float], None] | None = None,
) -> SagaRun:
    """Run, or resume, the saga ``key``: every step not recorded yet, in order, then complete it.

    ``defaults`` are further :class:`SagaRun` fields for a new record. ``finish(saga, run_ms)``
    may set ``amount``, ``policy`` and ``detail`` on completion (``run_ms``: this run's time).
    A completed or failed saga is returned as it is. Returns the saga as the run left it;
    an error that leaves it ``running`` is raised.
    """
    saga, _ = SagaRun.objects.get_or_create(
        key=key, defaults={"kind": kind, "boss": boss, "fight": fight, **(defaults or {})}
    )
    if saga.status != SagaStatus.RUNNING:
        return saga
    names = [s.name for s in steps]
    saga = _attempt_begin(saga_id=saga.pk, names=names, max_attempts=max_attempts)
    if saga.status != SagaStatus.RUNNING:
        return saga
    started = time.monotonic()
    for step in steps:
        try:
            saga = _step_run(saga_id=saga.pk, kind=kind, step=step)
        except SagaUnrecoverable as exc:
            return _error_record(saga_id=saga.pk, step=step.name, error=exc, fail=True)
        except Exception as exc:
            saga = _error_record(
                saga_id=saga.pk, step=step.name, error=exc, fail=saga.attempts >= max_attempts
            )
            if saga.status == SagaStatus.FAILED:
                return saga
            raise
    return _complete(saga_id=saga.pk, names=names, run_ms=_ms_since(started), finish=finish)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _attempt_begin(*, saga_id: int, names: list[str], max_attempts: int) -> SagaRun:
    """Count one more attempt, or fail the saga when it has used them all."""
    with transaction.atomic():
        saga = SagaRun.objects.select_for_update().get(pk=saga_id)
        if saga.status != SagaStatus.RUNNING:
            return saga
        if saga.attempts >= max_attempts:
            # The earlier attempts died without recording an error (killed, lost): give up
            # rather than retry forever; the last recorded error, if any, says why.
            pending = [n for n in names if n not in steps_done(saga)]
            last = (saga.detail or {}).get("error") or {}
            message = f"gave up after {saga.attempts} attempts (at most {max_attempts})"
            if last.get("message"):
                message += f"; last error: {last['message']}"
            _fail(
                saga,
                error={
                    "step": pending[0] if pending else "",
                    "type": "AttemptsExhausted",
                    "message": message,
                    "attempt": saga.attempts,
                    "at": timezone.now().isoformat(),
                },
            )
            return saga
        saga.attempts += 1
        saga.detail = {**saga.detail, "attempted_at": timezone.now().isoformat()}
        saga.save(update_fields=["attempts", "detail"])
    return saga


def _step_run(*, saga_id: int, kind: str, step: SagaStep) -> SagaRun:
    """Do ``step`` and record it in one transaction, unless it is recorded already."""
    failpoint(f"{kind}.{step.name}.before")
    with transaction.atomic():
        saga = SagaRun.objects.select_for_update().get(pk=saga_id)
        if step.name in steps_done(saga):
            return saga
        started = time.monotonic()
        record = step.work(saga)
        failpoint(f"{kind}.{step.name}.inside")
        saga.steps = [
            *saga.steps,
            {"step": step.name, "at": timezone.now().isoformat(), "ms": _ms_since(started), **record},
        ]
        saga.save(update_fields=["steps", "detail", *step.fields])
    return saga


def _error_record(*, saga_id: int, step: str, error: Exception, fail: bool) -> SagaRun:
    """Keep a step's error on the saga (its own transaction: the step's was rolled back)."""
    with transaction.atomic():
        saga = SagaRun.objects.select_for_update().get(pk=saga_id)
        record = {
            "step": step,
            "type": type(error).__name__,
            "message": str(error),
            "attempt": saga.attempts,
            "at": timezone.now().isoformat(),
        }
        if fail:
            _fail(saga, error=record)
        else:
            saga.detail = {**saga.detail, "error": record}
            saga.save(update_fields=["detail"])
    logger.warning("saga %s: step %s failed: %r", saga.key, step, error, extra=_log_context(saga))
    return saga


def _log_context(saga: SagaRun) -> dict[str, Any]:
    """``extra=`` of a saga's log lines (structured logs: docs/deploy.md)."""
    return {"saga": saga.key, "boss": saga.boss_id, "shard": saga.shard_key or None, "epoch": saga.epoch}


def _fail(saga: SagaRun, *, error: dict[str, Any]) -> None:
    """End ``saga`` as failed with ``error`` (the caller holds its row lock)."""
    saga.status = SagaStatus.FAILED
    saga.finished_at = timezone.now()
    saga.detail = {**saga.detail, "error": error}
    saga.save(update_fields=["status", "finished_at", "detail"])
    metrics.SAGAS.labels(kind=saga.kind, outcome="failed").inc()
    logger.error("saga %s failed: %s", saga.key, error.get("message"), extra=_log_context(saga))


def _complete(
    *, saga_id: int, names: list[str], run_ms: float, finish: Callable[[SagaRun, float], None] | None
) -> SagaRun:
    """Mark the saga completed once every step is recorded (a concurrent run may have done it)."""
    with transaction.atomic():
        saga = SagaRun.objects.select_for_update().get(pk=saga_id)
        if saga.status != SagaStatus.RUNNING or steps_done(saga) != names:
            return saga
        if finish is not None:
            finish(saga, run_ms)
        saga.status = SagaStatus.COMPLETED
        saga.finished_at = timezone.now()
        saga.save(update_fields=["status", "finished_at", "amount", "policy", "detail"])
    metrics.SAGAS.labels(kind=saga.kind, outcome="completed").inc()
    return saga
