"""The crash saga: fence a silent or retired session and settle what it held (docs/sagas.md).

Also shard retirement, which runs the same saga for every session a shard still has.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from bosses.models import BossEncounter, BossStatus, CrashPolicy, SagaKind, SagaRun, SagaStatus
from core import authority, keys
from core.redis import get_redis
from shards.models import Shard, ShardStatus


def shard_retire(*, shard: Shard) -> int:
    """Retire a shard: refuse new sessions and fence every epoch it had on every boss.

    Held damage of its sessions is settled under each boss's crash policy. Returns how many
    sessions were fenced.
    """
    Shard.objects.filter(pk=shard.pk).update(status=ShardStatus.RETIRED)
    shard.refresh_from_db()
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


def session_fence(
    *, boss: BossEncounter, shard_key: str, epoch: int, reason: str = "crashed", silent_ms: int | None = None
) -> SagaRun:
    """Fence one session and settle its held damage under the boss's policy (a crash saga).

    Steps (recorded on the saga with times): ``fence`` (fence.lua retires the epoch and, in
    the same atomic step, settles the held damage: *fair* adds it to the buffer for the next
    tick, *harsh* adds it to ``discarded``), ``recovered``/``discarded`` (the amount),
    ``mark_shard`` (the shard row turns ``crashed`` when none of its sessions is left).
    Idempotent: the saga key is (boss, fight, session) and fence.lua returns the first
    settlement on a re-run, so a saga retried after a crash anywhere neither re-applies nor
    re-discards; :func:`crashed_sessions_scan` resumes one left ``running``.
    """
    started = time.monotonic()
    saga, _ = SagaRun.objects.get_or_create(
        key=f"crash:{boss.pk}:{boss.fight}:{shard_key}:{epoch}",
        defaults={
            "kind": SagaKind.CRASH,
            "boss": boss,
            "fight": boss.fight,
            "shard_key": shard_key,
            "epoch": epoch,
            "policy": boss.crash_policy,
            "detail": {"reason": reason, "silent_ms": silent_ms, "detected_at": timezone.now().isoformat()},
        },
    )
    if saga.status == SagaStatus.COMPLETED:
        return saga
    r = get_redis()
    out = authority.run(
        r, authority.fence_call(boss_id=boss.pk, shard_key=shard_key, epoch=epoch, policy=saga.policy)
    )
    fenced_at = timezone.now().isoformat()
    fence_ms = round((time.monotonic() - started) * 1000, 2)
    # The shard is crashed when no session of it is left unfenced on this boss.
    k = keys.BossKeys(boss.pk)
    alive = [s for s in r.hkeys(k.hb) if s.startswith(f"{shard_key}:") and not r.hexists(k.settled, s)]
    marked = False
    if not alive and saga.detail.get("reason", reason) == "crashed":
        marked = bool(
            Shard.objects.filter(key=shard_key, current_epoch=epoch)
            .exclude(status=ShardStatus.RETIRED)
            .update(status=ShardStatus.CRASHED)
        )
    steps = [
        {"step": "fence", "outcome": out.code, "last_seq": out.last_seq, "at": fenced_at, "ms": fence_ms},
        {
            "step": "recovered" if out.policy == CrashPolicy.FAIR else "discarded",
            "amount": out.amount,
            "at": fenced_at,
        },
        {
            "step": "mark_shard",
            "crashed": marked,
            "other_sessions": len(alive),
            "at": timezone.now().isoformat(),
        },
    ]
    detail = {
        **saga.detail,
        "last_seq": out.last_seq,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 2),
    }
    SagaRun.objects.filter(pk=saga.pk).update(
        status=SagaStatus.COMPLETED,
        amount=out.amount,
        policy=out.policy or saga.policy,
        steps=steps,
        detail=detail,
        attempts=F("attempts") + 1,
        finished_at=timezone.now(),
    )
    saga.refresh_from_db()
    return saga


# A crash saga still 'running' this long after it started lost its process: the scan resumes it.
CRASH_SAGA_RESUME_AFTER_MS = 2_000


def _scan_blind_after_ms() -> int:
    return 2 * settings.CRASH_SCAN_INTERVAL_MS + 500


def _watching_since(r, now_ms: int) -> int:
    """Start of the scanner's unbroken watch; a gap in scans (Redis away, no worker) restarts it.

    After a blind spot nobody can tell a silent shard from one whose heartbeats could not
    be recorded (Redis was paused or down), so every session gets a full timeout counted
    from the end of the gap: an authority outage never crashes healthy shards (which under
    *harsh* would discard their damage); a shard really gone is declared one timeout later.
    """
    last, since = r.mget(keys.CRASH_SCAN_LAST, keys.CRASH_SCAN_SINCE)
    if last is None or since is None or now_ms - int(last) > _scan_blind_after_ms():
        r.set(keys.CRASH_SCAN_SINCE, now_ms)
        return now_ms
    return int(since)


def crashed_sessions_scan() -> list[SagaRun]:
    """Fence every session silent past its boss's heartbeat timeout (periodic, ~500 ms).

    A sign of life is a heartbeat or an accepted delta (both stamp ``hb`` with Redis TIME).
    Silence is only counted while the scanner itself was watching (:func:`_watching_since`).
    Crash sagas left ``running`` by a dead process are finished here too.
    """
    r = get_redis()
    now_s, now_us = r.time()
    now_ms = now_s * 1000 + now_us // 1000
    since = _watching_since(r, now_ms)
    try:
        return _scan(r, now_ms, since)
    finally:
        r.set(keys.CRASH_SCAN_LAST, now_ms)


def _scan(r, now_ms: int, since: int) -> list[SagaRun]:
    ids = [int(i) for i in r.smembers(keys.LIVE_BOSSES)]
    sagas: list[SagaRun] = []
    if not ids:
        return sagas
    for boss in BossEncounter.objects.filter(pk__in=ids):
        k = keys.BossKeys(boss.pk)
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(k.hb)
        pipe.hgetall(k.settled)
        beats, settled = pipe.execute()
        for sess, seen in beats.items():
            silent = now_ms - max(int(seen), since)
            if sess in settled or silent <= boss.heartbeat_timeout_ms:
                continue
            shard_key, _, epoch = sess.partition(":")
            sagas.append(session_fence(boss=boss, shard_key=shard_key, epoch=int(epoch), silent_ms=silent))
    stale = timezone.now() - timedelta(milliseconds=CRASH_SAGA_RESUME_AFTER_MS)
    for saga in SagaRun.objects.filter(
        kind=SagaKind.CRASH, status=SagaStatus.RUNNING, boss_id__in=ids, started_at__lt=stale
    ).select_related("boss"):
        if saga.fight == saga.boss.fight:
            sagas.append(
                session_fence(
                    boss=saga.boss,
                    shard_key=saga.shard_key,
                    epoch=saga.epoch,
                    reason=saga.detail.get("reason", "crashed"),
                )
            )
    return sagas
