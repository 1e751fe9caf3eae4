"""The crash saga: fence a silent or retired session and settle what it held (docs/sagas.md).

It runs on the shared saga runner (:mod:`bosses.sagas.runner`), like the victory saga: steps
``fence``, ``settle``, ``mark_shard``, each done and recorded in one transaction, failpoints
``crash.<step>.before`` and ``crash.<step>.inside``. Also shard retirement, which runs the
same saga for every session a shard still has, and the periodic scan that detects silent
sessions and resumes crash sagas a dead process left ``running``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from bosses import signals
from bosses.models import (
    CRASH_REASON,
    END_KINDS,
    BossEncounter,
    BossStatus,
    CrashPolicy,
    SagaKind,
    SagaRun,
    SagaStatus,
)
from bosses.sagas.runner import SagaStep, saga_last_progress, saga_run
from bosses.signals import fight_event_send
from core import authority, keys
from core.clients import Routed, execute_pipelined
from core.clock import Clock, RedisClock
from core.redis import get_redis
from shards.models import Shard, ShardStatus
from shards.services import shard_auth_copy_drop

CRASH_STEPS = ("fence", "settle", "mark_shard")
# A crash saga still 'running' this long after its last progress (start, attempt or step)
# lost its process: the scan resumes it.
CRASH_SAGA_RESUME_AFTER_MS = 2_000
# Runs of one crash saga before it is failed. The scan re-runs an unfenced silent session's
# saga at every scan (500 ms) and a stalled one every CRASH_SAGA_RESUME_AFTER_MS, so this is
# about 10 s of failing scans, or 40 s of stalled resumes.
CRASH_MAX_ATTEMPTS = 20
# Live bosses per pipeline (their heartbeats and settlements) and per SQL query (the
# timeouts of those with a silent session) of the crash scan.
CRASH_SCAN_BATCH = 100


def shard_retire(*, shard: Shard) -> int:
    """Retire a shard: refuse new sessions and fence every epoch it had on every boss.

    Held damage of its sessions is settled under each boss's crash policy. Returns how many
    sessions were fenced.
    """
    Shard.objects.filter(pk=shard.pk).update(status=ShardStatus.RETIRED)
    shard.refresh_from_db()
    shard_auth_copy_drop(shard_key=shard.key)
    r = get_redis()
    fenced = 0
    for boss in BossEncounter.objects.exclude(status=BossStatus.DRAFT):
        k = keys.BossKeys(boss.pk)
        if not r.exists(k.state):
            continue
        r.hset(k.floor, shard.key, shard.current_epoch + 1)
        for sess in set(r.hkeys(k.seq)) | set(r.hkeys(k.hb)):
            key, _, epoch = sess.partition(":")
            if key == shard.key:
                session_fence(boss=boss, shard_key=key, epoch=int(epoch), reason="retired")
                fenced += 1
    return fenced


# Why a session ended, as a crash saga records it in ``detail["reason"]`` (docs/sagas.md).
# Only ``crashed`` marks the shard crashed: the others were chosen by the shard or an operator.
END_REASONS = (CRASH_REASON, *END_KINDS)


def session_end(*, shard_key: str, epoch: int, reason: str, boss_ids: Iterable[int] = ()) -> dict[str, int]:
    """End one session on every boss it has state on: a crash saga per boss, ``reason`` recorded.

    The bosses are the live set (live or paused, where the crash scan looks) plus ``boss_ids``
    (those the caller saw the session touch): a session resumed on a new socket may have
    sent its damage over an earlier one, so the caller's own list is not enough. Returns
    ``{slug: amount settled}``. Used for ``bye`` (``left``) and a new ``auth`` on the same
    socket (``replaced``); the crash scan and :func:`shard_retire` reach the same saga.
    """
    if reason not in END_REASONS:
        raise ValueError(f"reason must be one of {END_REASONS}, got {reason!r}")
    r = get_redis()
    sess = keys.session_id(shard_key, epoch)
    candidates = sorted({int(i) for i in r.smembers(keys.LIVE_BOSSES)} | set(boss_ids))
    pipe = r.pipeline(transaction=False)
    for boss_id in candidates:
        k = keys.BossKeys(boss_id)
        pipe.hexists(k.seq, sess)
        pipe.hexists(k.hb, sess)
    found = pipe.execute() if candidates else []
    touched = [b for i, b in enumerate(candidates) if found[2 * i] or found[2 * i + 1]]
    settled = {}
    for boss in BossEncounter.objects.filter(pk__in=touched).order_by("pk"):
        saga = session_fence(boss=boss, shard_key=shard_key, epoch=epoch, reason=reason)
        settled[boss.slug] = saga.amount
    return settled


def crash_saga_key(*, boss_id: int, fight: int, shard_key: str, epoch: int) -> str:
    """The idempotency key of a session's crash saga: one per (boss, fight, session)."""
    return f"crash:{boss_id}:{fight}:{shard_key}:{epoch}"


def _fence(boss: BossEncounter, shard_key: str, epoch: int) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        # fence.lua retires the epoch and settles what it held in one atomic step. It runs
        # again when this step's transaction did not commit, and then returns the first
        # settlement ('already'): a resume never applies or discards twice.
        out = authority.run(
            get_redis(),
            authority.fence_call(boss_id=boss.pk, shard_key=shard_key, epoch=epoch, policy=saga.policy),
        )
        # Under fair, the held breakdown's players were credited in the same step (a re-run
        # reports the first credit): the rest of the amount is the shard's only.
        credited = {"players": out.credited_players, "amount": out.credited_amount}
        saga.detail = {**saga.detail, "last_seq": out.last_seq, "credited": credited}
        return {
            "outcome": out.code,
            "policy": out.policy,
            "amount": out.amount,
            "last_seq": out.last_seq,
            "credited_players": out.credited_players,
            "credited_amount": out.credited_amount,
        }

    return work


def _settle(saga: SagaRun) -> dict[str, Any]:
    # Later steps read the fence's record, never Redis again: a resume settles the same amount.
    [fence] = [s for s in saga.steps if s.get("step") == "fence"]
    saga.policy = fence["policy"] or saga.policy
    saga.amount = fence["amount"]
    outcome = "recovered" if fence["policy"] == CrashPolicy.FAIR else "discarded"
    fight_event_send(
        boss_id=saga.boss_id,
        slug=saga.boss.slug,
        fight=saga.fight,
        event=signals.CRASH_SETTLED,
        occurrence=f"{saga.shard_key}:{saga.epoch}",
        payload={
            "shard": saga.shard_key,
            "epoch": saga.epoch,
            "policy": saga.policy,
            "outcome": outcome,
            "amount": saga.amount,
            "reason": saga.detail.get("reason"),
        },
    )
    return {"outcome": outcome, "policy": saga.policy, "amount": saga.amount}


def _mark_shard(
    boss: BossEncounter, shard_key: str, epoch: int, reason: str
) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        # The shard is crashed when no session of it is left unfenced on this boss.
        r = get_redis()
        k = keys.BossKeys(boss.pk)
        alive = [
            s
            for s in r.hkeys(k.hb)
            if (field := keys.parse_session(s)) is not None
            and field.shard_key == shard_key
            and not r.hexists(k.settled, s)
        ]
        marked = False
        if not alive and saga.detail.get("reason", reason) == "crashed":
            marked = bool(
                Shard.objects.filter(key=shard_key, current_epoch=epoch)
                .exclude(status=ShardStatus.RETIRED)
                .update(status=ShardStatus.CRASHED)
            )
        return {"crashed": marked, "other_sessions": len(alive)}

    return work


def _finish(saga: SagaRun, run_ms: float) -> None:
    saga.detail = {**saga.detail, "elapsed_ms": run_ms}


def session_fence(
    *,
    boss: BossEncounter,
    shard_key: str,
    epoch: int,
    reason: str = "crashed",
    silent_ms: int | None = None,
    clock: Clock | None = None,
) -> SagaRun:
    """Fence one session and settle its held damage under the boss's policy (a crash saga).

    Steps, each done and recorded in one transaction by the saga runner (docs/sagas.md):
    ``fence`` (fence.lua retires the epoch and, in the same atomic step, settles the held
    damage: *fair* adds it to the buffer for the next tick, *harsh* adds it to
    ``discarded``), ``settle`` (the saga records the policy and amount, ``recovered`` or
    ``discarded``), ``mark_shard`` (the shard row turns ``crashed`` when none of its sessions
    is left and the reason is a crash). Idempotent: the saga key is (boss, fight, session)
    and fence.lua returns the first settlement on a re-run, so a saga resumed after a crash
    anywhere neither re-applies nor re-discards; :func:`crashed_sessions_scan` resumes one
    left ``running``. ``clock`` (default: Redis TIME) dates the detection.
    """
    clock = clock or RedisClock(get_redis())
    detected_at = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC).isoformat()
    return saga_run(
        key=crash_saga_key(boss_id=boss.pk, fight=boss.fight, shard_key=shard_key, epoch=epoch),
        kind=SagaKind.CRASH,
        boss=boss,
        fight=boss.fight,
        steps=[
            SagaStep("fence", _fence(boss, shard_key, epoch)),
            SagaStep("settle", _settle, fields=("amount", "policy")),
            SagaStep("mark_shard", _mark_shard(boss, shard_key, epoch, reason)),
        ],
        max_attempts=CRASH_MAX_ATTEMPTS,
        defaults={
            "shard_key": shard_key,
            "epoch": epoch,
            "policy": boss.crash_policy,
            "detail": {"reason": reason, "silent_ms": silent_ms, "detected_at": detected_at},
        },
        finish=_finish,
    )


def _scan_blind_after_ms() -> int:
    return 2 * settings.CRASH_SCAN_INTERVAL_MS + 500


def _watching_since(r, now_ms: int) -> int:
    """Start of the scanner's unbroken watch; a gap in scans restarts it.

    A gap is any stretch without a completed scan: Redis away, no worker, or the database
    away (a scan whose SQL read failed saw nothing and records nothing). After a blind spot
    nobody can tell a silent shard from one whose heartbeats could not be recorded, or whose
    gateway could not serve it, so every session gets a full timeout counted from the end
    of the gap: its deadline moves by at least the time the scan was blind. An outage never
    crashes healthy shards (which under *harsh* would discard their damage); a shard really
    gone is declared one timeout later.
    """
    last, since = r.mget(keys.CRASH_SCAN_LAST, keys.CRASH_SCAN_SINCE)
    if last is None or since is None or now_ms - int(last) > _scan_blind_after_ms():
        r.set(keys.CRASH_SCAN_SINCE, now_ms)
        return now_ms
    return int(since)


def crashed_sessions_scan(*, clock: Clock | None = None) -> list[SagaRun]:
    """Fence every session silent past its boss's heartbeat timeout (periodic, ~500 ms).

    A sign of life is a heartbeat or an accepted delta (both stamp ``hb`` with Redis TIME).
    Silence is only counted while the scanner itself was watching (:func:`_watching_since`).
    Crash sagas left ``running`` by a dead process are finished here too. ``clock`` tells
    "now" (default: Redis TIME, the clock the stamps are written with; tests pass a
    :class:`core.clock.ManualClock` and advance it). Returns the sagas run.
    """
    r = get_redis()
    clock = clock or RedisClock(r)
    now_ms = clock.now_ms()
    since = _watching_since(r, now_ms)
    # Only a scan that saw everything (its SQL read and every saga done) counts as watching:
    # one that failed (the database or Redis away) leaves the last scan where it was, so the
    # next scan finds the gap and gives every session a full timeout from its end.
    sagas = _scan(r, clock=clock, now_ms=now_ms, since=since)
    r.set(keys.CRASH_SCAN_LAST, now_ms)
    return sagas


def _scan(r: redis.Redis, *, clock: Clock, now_ms: int, since: int) -> list[SagaRun]:
    ids = sorted(int(i) for i in r.smembers(keys.LIVE_BOSSES))
    sagas: list[SagaRun] = []
    if not ids:
        return sagas
    for start in range(0, len(ids), CRASH_SCAN_BATCH):
        for boss, sess, silent in _silent_sessions(r, ids[start : start + CRASH_SCAN_BATCH], now_ms, since):
            shard_key, _, epoch = sess.partition(":")
            sagas.append(
                session_fence(boss=boss, shard_key=shard_key, epoch=int(epoch), silent_ms=silent, clock=clock)
            )
    # A saga without progress for CRASH_SAGA_RESUME_AFTER_MS lost its process: resume it.
    live = set(ids)
    stale = datetime.fromtimestamp((now_ms - CRASH_SAGA_RESUME_AFTER_MS) / 1000, tz=UTC)
    for saga in SagaRun.objects.filter(
        kind=SagaKind.CRASH, status=SagaStatus.RUNNING, started_at__lt=stale
    ).select_related("boss"):
        if (
            saga.boss_id in live
            and saga.fight == saga.boss.fight
            and saga.epoch is not None
            and saga_last_progress(saga=saga) < stale
        ):
            sagas.append(
                session_fence(
                    boss=saga.boss,
                    shard_key=saga.shard_key,
                    epoch=saga.epoch,
                    reason=saga.detail.get("reason", "crashed"),
                    clock=clock,
                )
            )
    return sagas


def _silent_sessions(
    r: redis.Redis, batch: list[int], now_ms: int, since: int
) -> list[tuple[BossEncounter, str, int]]:
    """``(boss, session, silent ms)`` of every unsettled session of ``batch`` silent past its
    boss's heartbeat timeout: one pipeline for the batch's heartbeats and settlements, and
    one SQL query for the timeouts of the bosses that have a silent session at all."""
    commands: list[Routed] = []
    for boss_id in batch:
        k = keys.boss_keys(boss_id)
        commands += [(k.hb, ("HGETALL", k.hb)), (k.settled, ("HKEYS", k.settled))]
    replies = execute_pipelined(r, commands)
    silent: dict[int, dict[str, int]] = {}
    for i, boss_id in enumerate(batch):
        beats, settled = replies[2 * i], replies[2 * i + 1]
        if isinstance(beats, Exception) or isinstance(settled, Exception):
            continue  # its master is down: nothing can be fenced there now
        quiet = {s: now_ms - max(int(seen), since) for s, seen in beats.items() if s not in set(settled)}
        quiet = {s: ms for s, ms in quiet.items() if ms > 0}
        if quiet:
            silent[boss_id] = quiet
    if not silent:
        return []
    return [
        (boss, sess, ms)
        for boss in BossEncounter.objects.filter(pk__in=list(silent))
        for sess, ms in silent[boss.pk].items()
        if ms > boss.heartbeat_timeout_ms
    ]
