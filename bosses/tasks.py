"""Celery tasks: thin wrappers over services and sagas (task names are part of the beat schedule).

Tasks are the top of this app: services enqueue a saga by its task *name*
(``bosses.services.VICTORY_SAGA_TASK``), so nothing below imports this module.
"""

from __future__ import annotations

import time

from celery import shared_task

from bosses.sagas.crash import crashed_sessions_scan
from bosses.sagas.restore import archive_pass_run
from bosses.sagas.spawn import spawns_apply
from bosses.sagas.victory import boss_victory_run, victory_sagas_resume
from bosses.services import VICTORY_SAGA_TASK, boss_schedules_apply, boss_tick_all, tick_pass_claim
from core import keys, metrics
from core.redis import REDIS_DOWN, get_redis


@shared_task(name="bosses.tick_live_bosses", ignore_result=True)
def tick_live_bosses(*, partition: int = 0, partitions: int = 1) -> None:
    """The sync tick of one partition: drain and apply its dirty bosses (beat, every ~100 ms).

    A task of a backlog (the worker was away, the broker held the beat's sends) finds the
    partition's claim of the pass that just ran and returns after one Redis command."""
    if not tick_pass_claim(partition=partition):
        metrics.TICK_SKIPPED.inc()
        return
    started = time.perf_counter()
    try:
        results = boss_tick_all(partition=partition, partitions=partitions)
    except REDIS_DOWN:
        metrics.AUTHORITY_ERRORS.labels(op="tick").inc()
        raise
    metrics.TICK_DURATION.observe(time.perf_counter() - started)
    metrics.TICK_BOSSES.observe(len(results))
    for out in results.values():
        if out.code == "applied" and out.applied:
            metrics.DAMAGE_APPLIED.labels(boss=out.slug).inc(out.applied)
    if partition == 0:  # the pass that records its start in TICK_TIMES
        _observe_tick_interval()


def _observe_tick_interval() -> None:
    """Interval between this pass's start and the previous one's, as TICK_TIMES recorded
    them (whichever worker ran it), for ``worldboss_tick_interval_seconds``."""
    try:
        newest = [int(t) for t in get_redis().lrange(keys.TICK_TIMES, 0, 1)]
    except REDIS_DOWN:
        return
    if len(newest) == 2 and newest[0] >= newest[1]:
        metrics.TICK_INTERVAL.observe((newest[0] - newest[1]) / 1000)


@shared_task(
    name=VICTORY_SAGA_TASK,
    ignore_result=True,
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=0.5,
    retry_backoff_max=10,
    max_retries=20,
)
def victory_saga(*, boss_id: int, fight: int) -> None:
    """Run or resume the victory saga of a defeated boss (exactly once per fight).

    An error that leaves the saga running is raised, so the task is retried; a saga that
    cannot complete ends ``failed`` (docs/sagas.md) and returns, so it is not retried.
    """
    boss_victory_run(boss_id=boss_id, fight=fight)


@shared_task(name="bosses.archive_event_logs", ignore_result=True)
def archive_event_logs() -> None:
    """Check the changed fights' authority against the archive (restore what Redis lost or
    rolled back), then copy their new event-log entries to SQL."""
    archive_pass_run()


@shared_task(name="bosses.apply_schedules", ignore_result=True)
def apply_schedules() -> None:
    """Start scheduled bosses and expire those past their end time."""
    boss_schedules_apply()


@shared_task(name="bosses.apply_spawns", ignore_result=True)
def apply_spawns() -> None:
    """Spawn the due occurrences of recurring schedules (each exactly once) and send the
    ``boss.spawn_upcoming`` notices (docs/liveops.md)."""
    spawns_apply()


@shared_task(name="bosses.resume_sagas", ignore_result=True)
def resume_sagas() -> None:
    """Re-enqueue victory sagas whose worker died mid-run (failed ones are left alone)."""
    victory_sagas_resume()


@shared_task(name="bosses.scan_crashed_sessions", ignore_result=True)
def scan_crashed_sessions() -> None:
    """Crash detection: fence sessions silent past their boss's heartbeat timeout, and resume
    crash sagas a dead process left running (Redis TIME is the clock)."""
    crashed_sessions_scan()
