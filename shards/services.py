"""Shard identity, sessions, and the platform buffer: deltas and heartbeats into Redis.

A *session* is one connection of a shard, identified by ``(shard_key, epoch)``. The platform
hands out epochs (:func:`shard_session_open`); several processes may serve one shard, each
with its own epoch and seq counter, so dedupe and fencing stay exact.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

import redis
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from bosses import authority, keys
from bosses.errors import (AuthorityUnavailable, BossNotLive, Fenced, InvalidInput, SeqGap,
                           Unauthorized, UnknownBoss, UnknownEpoch, UnknownShard)
from bosses.models import BossEncounter, BossStatus, CrashPolicy, SagaKind, SagaRun, SagaStatus
from bosses.validation import breakdown_map, damage_amount, epoch_number, seq_number, whole_number
from liveops.redis import get_async_redis, get_redis
from shards.models import SHARD_KEY_RE, Shard, ShardStatus

import re

SHARD_EPOCHS = "liveops:shards:epoch"  # HASH shard key -> last epoch handed out
TOKEN_BYTES = 32
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_SHARD_KEY = re.compile(SHARD_KEY_RE)
# Process-local lower bound of each shard's issued epochs: an epoch at or below it was
# certainly handed out, so the hot path skips a round trip. Epochs only grow.
_known_epochs: dict[str, int] = {}


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- identity --------------------------------------------------------------------------


def shard_create(*, key: str, name: str, region: str = "") -> tuple[Shard, str]:
    """Create a shard and return it with its token (shown once, stored only as a hash)."""
    if not isinstance(key, str) or not _SHARD_KEY.match(key):
        raise InvalidInput(f"shard key {key!r} must be lowercase letters, digits, '-' or '_' (max 64)")
    if Shard.objects.filter(key=key).exists():
        raise InvalidInput(f"shard {key!r} already exists")
    shard = Shard.objects.create(key=key, name=name or key, region=region)
    return shard, shard_token_rotate(shard=shard)


def shard_token_rotate(*, shard: Shard) -> str:
    """Give ``shard`` a new random token; the old one stops working at once."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    Shard.objects.filter(pk=shard.pk).update(token_hash=_hash_token(token), token_rotated_at=timezone.now())
    shard.token_hash = _hash_token(token)
    return token


def shard_authenticate(*, shard_key: str, token: str) -> Shard:
    """The shard whose token matches, or :class:`Unauthorized` (same error for every miss)."""
    if not isinstance(shard_key, str) or not isinstance(token, str) or not token:
        raise Unauthorized("shard key and token are required")
    shard = Shard.objects.filter(key=shard_key).first()
    expected = shard.token_hash if shard else _hash_token("-")
    if not hmac.compare_digest(expected, _hash_token(token)) or shard is None or not shard.token_hash:
        raise Unauthorized("unknown shard or wrong token")
    return shard


@dataclass(frozen=True)
class ShardSession:
    """One connection of a shard: deltas carry ``(shard_key, epoch, seq)``."""

    shard_key: str
    epoch: int


def shard_session_open(*, shard: Shard) -> ShardSession:
    """Hand out the next epoch of an authenticated shard; a crashed shard comes back online."""
    if shard.status == ShardStatus.RETIRED:
        raise Unauthorized(f"shard {shard.key} is retired")
    with transaction.atomic():
        Shard.objects.filter(pk=shard.pk).update(current_epoch=F("current_epoch") + 1,
                                                 status=ShardStatus.ONLINE)
        shard.refresh_from_db(fields=["current_epoch", "status"])
    try:
        get_redis().hset(SHARD_EPOCHS, shard.key, shard.current_epoch)
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    _known_epochs[shard.key] = shard.current_epoch
    return ShardSession(shard.key, shard.current_epoch)


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


# --- the platform buffer ---------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    """An acknowledged delta: ``duplicate`` when this seq had been accepted before."""

    seq: int
    duplicate: bool


def _validated_delta(shard_key, epoch, seq, amount, breakdown):
    if not isinstance(shard_key, str) or not _SHARD_KEY.match(shard_key):
        raise UnknownShard(f"unknown shard {shard_key!r}")
    epoch = epoch_number(epoch)
    seq = seq_number(seq)
    amount = damage_amount(amount)
    return epoch, seq, amount, breakdown_map(breakdown, amount=amount)


def _check_epoch(shard_key: str, epoch: int, issued: str | None) -> None:
    if issued is None:
        raise UnknownShard(f"unknown shard {shard_key!r} (no session was ever opened)")
    if epoch > int(issued):
        raise UnknownEpoch(f"epoch {epoch} was never handed out to shard {shard_key!r}")
    _known_epochs[shard_key] = int(issued)


def _ingest_result(out: authority.IngestOutcome, *, boss_id: int, seq: int) -> IngestResult:
    if out.code == "ok":
        return IngestResult(seq, duplicate=False)
    if out.code == "dup":
        return IngestResult(seq, duplicate=True)
    if out.code == "fenced":
        policy, amount = (authority.parse_settlement(out.detail) if out.detail != "retired"
                          else ("retired", 0))
        raise Fenced("this epoch was retired; reconnect for a new one", last_seq=out.last_seq,
                     policy=policy, settled=amount)
    if out.code == "gap":
        raise SeqGap(f"seq {seq} skips ahead; the next seq is {out.last_seq + 1}",
                     last_seq=out.last_seq)
    if out.code == "not_live":
        raise BossNotLive(f"the boss is {out.detail}; damage is refused", status=out.detail)
    raise UnknownBoss(f"boss {boss_id} has no live authority")


def delta_ingest(*, boss_id: int, shard_key: str, epoch: int, seq: int, amount: int,
                 breakdown: Mapping[str, int] | None = None) -> IngestResult:
    """Accept one shard delta exactly once per (shard, epoch, seq); typed errors otherwise."""
    epoch, seq, amount, players = _validated_delta(shard_key, epoch, seq, amount, breakdown)
    r = get_redis()
    try:
        if epoch > _known_epochs.get(shard_key, 0):
            _check_epoch(shard_key, epoch, r.hget(SHARD_EPOCHS, shard_key))
        out = authority.run(r, authority.ingest_call(boss_id=boss_id, shard_key=shard_key, epoch=epoch,
                                                     seq=seq, amount=amount, breakdown=players))
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    return _ingest_result(out, boss_id=boss_id, seq=seq)


async def adelta_ingest(*, boss_id: int, shard_key: str, epoch: int, seq: int, amount: int,
                        breakdown: Mapping[str, int] | None = None) -> IngestResult:
    """Async :func:`delta_ingest` (for consumers)."""
    epoch, seq, amount, players = _validated_delta(shard_key, epoch, seq, amount, breakdown)
    r = get_async_redis()
    try:
        if epoch > _known_epochs.get(shard_key, 0):
            _check_epoch(shard_key, epoch, await r.hget(SHARD_EPOCHS, shard_key))
        out = await authority.arun(r, authority.ingest_call(
            boss_id=boss_id, shard_key=shard_key, epoch=epoch, seq=seq, amount=amount, breakdown=players))
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    return _ingest_result(out, boss_id=boss_id, seq=seq)


@dataclass(frozen=True)
class HeartbeatResult:
    last_seq: int
    held: int


def _heartbeat_call(boss_id, shard_key, epoch, pending, inflight_seq, inflight_amount):
    if not isinstance(shard_key, str) or not _SHARD_KEY.match(shard_key):
        raise UnknownShard(f"unknown shard {shard_key!r}")
    epoch = epoch_number(epoch)
    pending = whole_number(pending, field="pending", minimum=0, maximum=2**50)
    inflight_seq = whole_number(inflight_seq, field="inflight.seq", minimum=0, maximum=2**53 - 1)
    inflight_amount = whole_number(inflight_amount, field="inflight.amount", minimum=0, maximum=2**50)
    return authority.heartbeat_call(boss_id=boss_id, shard_key=shard_key, epoch=epoch, pending=pending,
                                    inflight_seq=inflight_seq, inflight_amount=inflight_amount)


def _heartbeat_result(out: authority.HeartbeatOutcome, boss_id: int) -> HeartbeatResult:
    if out.code == "fenced":
        policy, amount = (authority.parse_settlement(out.detail) if out.detail != "retired"
                          else ("retired", 0))
        raise Fenced("this epoch was retired; reconnect for a new one", last_seq=out.last_seq,
                     policy=policy, settled=amount)
    if out.code == "no_boss":
        raise UnknownBoss(f"boss {boss_id} has no live authority")
    return HeartbeatResult(out.last_seq, int(out.detail))


def heartbeat_record(*, boss_id: int, shard_key: str, epoch: int, pending: int,
                     inflight_seq: int = 0, inflight_amount: int = 0) -> HeartbeatResult:
    """Record a session's sign of life and the damage it still holds unacknowledged."""
    call = _heartbeat_call(boss_id, shard_key, epoch, pending, inflight_seq, inflight_amount)
    try:
        return _heartbeat_result(authority.run(get_redis(), call), boss_id)
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc


async def aheartbeat_record(*, boss_id: int, shard_key: str, epoch: int, pending: int,
                            inflight_seq: int = 0, inflight_amount: int = 0) -> HeartbeatResult:
    """Async :func:`heartbeat_record`."""
    call = _heartbeat_call(boss_id, shard_key, epoch, pending, inflight_seq, inflight_amount)
    try:
        return _heartbeat_result(await authority.arun(get_async_redis(), call), boss_id)
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc


# --- crash detection saga ----------------------------------------------------------------


def session_fence(*, boss: BossEncounter, shard_key: str, epoch: int, reason: str = "crashed",
                  silent_ms: int | None = None) -> SagaRun:
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
        defaults={"kind": SagaKind.CRASH, "boss": boss, "fight": boss.fight, "shard_key": shard_key,
                  "epoch": epoch, "policy": boss.crash_policy,
                  "detail": {"reason": reason, "silent_ms": silent_ms,
                             "detected_at": timezone.now().isoformat()}},
    )
    if saga.status == SagaStatus.COMPLETED:
        return saga
    r = get_redis()
    out = authority.run(r, authority.fence_call(boss_id=boss.pk, shard_key=shard_key, epoch=epoch,
                                                policy=saga.policy))
    fenced_at = timezone.now().isoformat()
    fence_ms = round((time.monotonic() - started) * 1000, 2)
    # The shard is crashed when no session of it is left unfenced on this boss.
    k = keys.BossKeys(boss.pk)
    alive = [s for s in r.hkeys(k.hb) if s.startswith(f"{shard_key}:") and not r.hexists(k.settled, s)]
    marked = False
    if not alive and saga.detail.get("reason", reason) == "crashed":
        marked = bool(Shard.objects.filter(key=shard_key, current_epoch=epoch)
                      .exclude(status=ShardStatus.RETIRED).update(status=ShardStatus.CRASHED))
    steps = [{"step": "fence", "outcome": out.code, "last_seq": out.last_seq, "at": fenced_at,
              "ms": fence_ms},
             {"step": "recovered" if out.policy == CrashPolicy.FAIR else "discarded",
              "amount": out.amount, "at": fenced_at},
             {"step": "mark_shard", "crashed": marked, "other_sessions": len(alive),
              "at": timezone.now().isoformat()}]
    detail = {**saga.detail, "last_seq": out.last_seq,
              "elapsed_ms": round((time.monotonic() - started) * 1000, 2)}
    SagaRun.objects.filter(pk=saga.pk).update(status=SagaStatus.COMPLETED, amount=out.amount,
                                              policy=out.policy or saga.policy, steps=steps,
                                              detail=detail, attempts=F("attempts") + 1,
                                              finished_at=timezone.now())
    saga.refresh_from_db()
    return saga


# A crash saga still 'running' this long after it started lost its process: the scan resumes it.
CRASH_SAGA_RESUME_AFTER_MS = 2_000


# The scanner's own continuity (Redis TIME, ms): when it last completed a scan, and since when
# it has been watching without a blind spot.
CRASH_SCAN_LAST = "liveops:crashscan:last_ms"
CRASH_SCAN_SINCE = "liveops:crashscan:since_ms"


def _scan_blind_after_ms() -> int:
    from django.conf import settings

    return 2 * settings.CRASH_SCAN_INTERVAL_MS + 500


def _watching_since(r, now_ms: int) -> int:
    """Start of the scanner's unbroken watch; a gap in scans (Redis away, no worker) restarts it.

    After a blind spot nobody can tell a silent shard from one whose heartbeats could not
    be recorded (Redis was paused or down), so every session gets a full timeout counted
    from the end of the gap: an authority outage never crashes healthy shards (which under
    *harsh* would discard their damage); a shard really gone is declared one timeout later.
    """
    last, since = r.mget(CRASH_SCAN_LAST, CRASH_SCAN_SINCE)
    if last is None or since is None or now_ms - int(last) > _scan_blind_after_ms():
        r.set(CRASH_SCAN_SINCE, now_ms)
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
        r.set(CRASH_SCAN_LAST, now_ms)


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
    for saga in SagaRun.objects.filter(kind=SagaKind.CRASH, status=SagaStatus.RUNNING,
                                       boss_id__in=ids, started_at__lt=stale).select_related("boss"):
        if saga.fight == saga.boss.fight:
            sagas.append(session_fence(boss=saga.boss, shard_key=saga.shard_key, epoch=saga.epoch,
                                       reason=saga.detail.get("reason", "crashed")))
    return sagas
