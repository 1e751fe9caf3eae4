"""Shard identity, sessions, and the platform buffer: deltas and heartbeats into Redis.

A *session* is one connection of a shard, identified by ``(shard_key, epoch)``. The platform
hands out epochs (:func:`shard_session_open`); several processes may serve one shard, each
with its own epoch and seq counter, so dedupe and fencing stay exact.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from core import authority, durability, metrics
from core.clients import AsyncClient
from core.errors import (
    AuthorityUnavailable,
    BossNotLive,
    Fenced,
    InvalidInput,
    SeqGap,
    Unauthorized,
    UnknownBoss,
    UnknownEpoch,
    UnknownShard,
)
from core.keys import SHARD_AUTH, SHARD_EPOCHS, BossKeys
from core.limits import MAX_HELD_AMOUNT, MAX_SEQ
from core.redis import REDIS_DOWN, get_async_redis, get_redis
from core.validation import (
    breakdown_map,
    damage_amount,
    epoch_number,
    held_breakdown_map,
    seq_number,
    whole_number,
)
from shards.models import SHARD_KEY_RE, Shard, ShardKind, ShardStatus

logger = logging.getLogger(__name__)

# What the ORM raises when the database cannot be reached (stopped, restarting, cut off).
# The hot path catches these and goes on from Redis (docs/faults.md, "Database outage").
DATABASE_DOWN: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

TOKEN_BYTES = 32
_SHARD_KEY = re.compile(SHARD_KEY_RE)
# Process-local lower bound of each shard's issued epochs: an epoch at or below it was
# certainly handed out, so the hot path skips a round trip. Epochs only grow.
_known_epochs: dict[str, int] = {}


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- identity --------------------------------------------------------------------------


def shard_create(*, key: str, name: str, region: str = "", kind: str = "game_server") -> tuple[Shard, str]:
    """Create a shard (``kind``: ``game_server`` or ``hosted``, see ShardKind) and return it
    with its token (shown once, stored only as a hash)."""
    if not isinstance(key, str) or not _SHARD_KEY.fullmatch(key):
        raise InvalidInput(f"shard key {key!r} must be lowercase letters, digits, '-' or '_' (max 64)")
    if Shard.objects.filter(key=key).exists():
        raise InvalidInput(f"shard {key!r} already exists")
    shard = Shard.objects.create(key=key, name=name or key, region=region, kind=kind)
    return shard, shard_token_rotate(shard=shard)


def shard_token_rotate(*, shard: Shard) -> str:
    """Give ``shard`` a new random token; the old one stops working at once."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    Shard.objects.filter(pk=shard.pk).update(token_hash=_hash_token(token), token_rotated_at=timezone.now())
    shard.token_hash = _hash_token(token)
    shard_auth_copy_drop(shard_key=shard.key)
    return token


# --- the Redis copy of a shard's identity (sessions resume through a database outage) ---


def _auth_copy_put(shard: Shard) -> None:
    """Copy a game server's shard identity to Redis after the database checked its token."""
    if shard.kind != ShardKind.GAME_SERVER or shard.status == ShardStatus.RETIRED:
        return
    entry = json.dumps({"kind": shard.kind, "token_hash": shard.token_hash})
    try:
        get_redis().hset(SHARD_AUTH, shard.key, entry)
    except REDIS_DOWN:
        pass  # the next database-checked auth copies it


def shard_auth_copy_drop(*, shard_key: str) -> None:
    """Forget the Redis copy of a shard's identity (its token was rotated, it was retired)."""
    try:
        get_redis().hdel(SHARD_AUTH, shard_key)
    except REDIS_DOWN:
        logger.warning(
            "could not drop the Redis copy of shard %s's token hash (Redis unreachable)", shard_key
        )


def shard_auth_copy_exists(*, shard_key: str) -> bool:
    """Whether Redis holds a copy of the shard's identity (False when Redis is unreachable)."""
    try:
        return bool(get_redis().hexists(SHARD_AUTH, shard_key))
    except REDIS_DOWN:
        return False


def shard_session_resume_from_copy(*, shard_key: str, token: str, resume: int | None) -> int:
    """Resume epoch ``resume`` of a game server while the database is unreachable.

    The token is checked against the Redis copy written by the last database-checked auth,
    and the epoch against Redis's issued-epoch counter. A new session needs the database
    (SQL hands out epochs): without ``resume`` this raises :class:`AuthorityUnavailable`,
    as it does when Redis has no copy; a wrong token raises :class:`Unauthorized`.
    """
    try:
        raw, issued = (
            get_redis()
            .pipeline(transaction=False)
            .hget(SHARD_AUTH, shard_key)
            .hget(SHARD_EPOCHS, shard_key)
            .execute()
        )
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    if raw is None:
        raise AuthorityUnavailable(
            "the database is unreachable and Redis has no copy of this shard's identity"
        )
    entry = json.loads(raw)
    if not token or not hmac.compare_digest(str(entry.get("token_hash", "")), _hash_token(token)):
        raise Unauthorized("unknown shard or wrong token")
    if resume is None or issued is None or resume > int(issued):
        raise AuthorityUnavailable(
            "the database is unreachable: only a session already opened can resume now"
        )
    return resume


def shard_authenticate(*, shard_key: str, token: str) -> Shard:
    """The shard whose token matches, or :class:`Unauthorized` (same error for every miss)."""
    if not isinstance(shard_key, str) or not isinstance(token, str) or not token:
        raise Unauthorized("shard key and token are required")
    shard = Shard.objects.filter(key=shard_key).first()
    expected = shard.token_hash if shard else _hash_token("-")
    if not hmac.compare_digest(expected, _hash_token(token)) or shard is None or not shard.token_hash:
        raise Unauthorized("unknown shard or wrong token")
    _auth_copy_put(shard)
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
        Shard.objects.filter(pk=shard.pk).update(
            current_epoch=F("current_epoch") + 1, status=ShardStatus.ONLINE
        )
        shard.refresh_from_db(fields=["current_epoch", "status"])
    try:
        get_redis().hset(SHARD_EPOCHS, shard.key, shard.current_epoch)
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    _known_epochs[shard.key] = shard.current_epoch
    return ShardSession(shard.key, shard.current_epoch)


# --- the platform buffer ---------------------------------------------------------------


def ack_durability() -> durability.AckDurability:
    """What an ack waits for, from ``AUTHORITY_DURABILITY`` / ``AUTHORITY_REPLICA_TIMEOUT_MS``
    (read per call: tests and the bench change them at run time)."""
    return durability.AckDurability(
        mode=settings.AUTHORITY_DURABILITY, replica_timeout_ms=settings.AUTHORITY_REPLICA_TIMEOUT_MS
    )


@dataclass(frozen=True)
class IngestResult:
    """An acknowledged delta: ``duplicate`` when this seq had been accepted before."""

    seq: int
    duplicate: bool


def _validated_delta(shard_key, epoch, seq, amount, breakdown, platform_ids=False):
    if not isinstance(shard_key, str) or not _SHARD_KEY.fullmatch(shard_key):
        raise UnknownShard(f"unknown shard {shard_key!r}")
    epoch = epoch_number(epoch)
    seq = seq_number(seq)
    amount = damage_amount(amount)
    return epoch, seq, amount, breakdown_map(breakdown, amount=amount, platform_ids=platform_ids)


def _issued_epoch_in_sql(shard_key: str) -> int | None:
    return Shard.objects.filter(key=shard_key).values_list("current_epoch", flat=True).first()


async def _acheck_epoch(r: AsyncClient, shard_key: str, epoch: int) -> None:
    """Refuse an epoch the platform never handed out to this shard.

    Free for an epoch at or below one this process has seen issued; else one round trip to
    Redis's epoch counter. That counter may have rolled back behind SQL, which is durable
    (docs/durability.md): when it lacks the epoch, SQL's is taken and Redis repaired, so a
    live session is not refused as ``unknown_epoch`` for ever; an epoch SQL never issued
    stays refused.
    """
    if epoch <= _known_epochs.get(shard_key, 0):
        return
    raw = await r.hget(SHARD_EPOCHS, shard_key)
    issued = None if raw is None else int(raw)
    if issued is None or epoch > issued:
        try:
            current = await sync_to_async(_issued_epoch_in_sql)(shard_key)
        except DATABASE_DOWN as exc:
            raise AuthorityUnavailable(f"the database is unreachable: {exc}") from exc
        if current is not None and (issued is None or current > issued):
            await r.hset(SHARD_EPOCHS, shard_key, current)
            issued = current
    if issued is None:
        raise UnknownShard(f"unknown shard {shard_key!r} (no session was ever opened)")
    if epoch > issued:
        raise UnknownEpoch(f"epoch {epoch} was never handed out to shard {shard_key!r}")
    _known_epochs[shard_key] = issued


def _fenced(detail: str, *, last_seq: int, credited: dict[str, int] | None) -> Fenced:
    """The ``fenced`` refusal: the settlement, and under *fair* who it credited, so the client
    drops exactly that damage from each player before sending the rest again."""
    policy, amount = authority.parse_settlement(detail) if detail != "retired" else ("retired", 0)
    extra: dict[str, object] = {"last_seq": last_seq, "policy": policy, "settled": amount}
    if policy == "fair":
        extra["credited"] = credited or {}
    return Fenced("this epoch was retired; reconnect for a new one", **extra)


def _ingest_result(out: authority.IngestOutcome, *, boss_id: int, seq: int) -> IngestResult:
    metrics.INGEST.labels(code=out.code).inc()
    if out.code == "ok":
        return IngestResult(seq, duplicate=False)
    if out.code == "dup":
        return IngestResult(seq, duplicate=True)
    if out.code == "fenced":
        raise _fenced(out.detail, last_seq=out.last_seq, credited=out.credited)
    if out.code == "gap":
        raise SeqGap(f"seq {seq} skips ahead; the next seq is {out.last_seq + 1}", last_seq=out.last_seq)
    if out.code == "not_live":
        raise BossNotLive(f"the boss is {out.detail}; damage is refused", status=out.detail)
    raise UnknownBoss(f"boss {boss_id} has no live authority")


async def adelta_ingest(
    *,
    boss_id: int,
    shard_key: str,
    epoch: int,
    seq: int,
    amount: int,
    breakdown: Mapping[str, int] | None = None,
    platform_ids: bool = False,
) -> IngestResult:
    """Accept one shard delta exactly once per (shard, epoch, seq); typed errors otherwise.

    The one ingest path: the gateway's sockets and the hosted shard await it (Celery, the
    admin and commands never ingest). With ``AUTHORITY_DURABILITY=replica`` it returns only
    once a replica has the write it acknowledges (a duplicate's included), else raises
    :class:`AuthorityUnavailable` (docs/durability.md).

    ``platform_ids``: the breakdown may name the platform's own ids (``user:``, ``guest:``,
    ``sim:``); only the platform's hosted shards pass True, a game server's never may.
    """
    epoch, seq, amount, players = _validated_delta(shard_key, epoch, seq, amount, breakdown, platform_ids)
    try:
        # inside the try: on REDIS_CLUSTER=auto the first client asks the node what it is
        r = get_async_redis()
        await _acheck_epoch(r, shard_key, epoch)
        out = await durability.aingest_acknowledged(
            r,
            authority.ingest_call(
                boss_id=boss_id, shard_key=shard_key, epoch=epoch, seq=seq, amount=amount, breakdown=players
            ),
            ack_durability(),
            mark_key=BossKeys(boss_id).durable,
        )
    except REDIS_DOWN as exc:
        metrics.AUTHORITY_ERRORS.labels(op="ingest").inc()
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    return _ingest_result(out, boss_id=boss_id, seq=seq)


@dataclass(frozen=True)
class HeartbeatResult:
    last_seq: int
    held: int
    durable_seq: int = 0  # the session's highest seq in the SQL archive
    attributed: int = 0  # the part of ``held`` stored per player (the breakdown, cut to fit)


def _heartbeat_call(  # noqa: PLR0913 - one argument per heartbeat field, validated here
    boss_id,
    shard_key,
    epoch,
    pending,
    inflight_seq,
    inflight_amount,
    breakdown=None,
    platform_ids=False,
    inflight_breakdown=None,
    sent=None,
):
    if not isinstance(shard_key, str) or not _SHARD_KEY.fullmatch(shard_key):
        raise UnknownShard(f"unknown shard {shard_key!r}")
    epoch = epoch_number(epoch)
    pending = whole_number(pending, field="pending", minimum=0, maximum=MAX_HELD_AMOUNT)
    inflight_seq = whole_number(inflight_seq, field="inflight.seq", minimum=0, maximum=MAX_SEQ)
    inflight_amount = whole_number(
        inflight_amount, field="inflight.amount", minimum=0, maximum=MAX_HELD_AMOUNT
    )
    if sent is not None:
        sent = whole_number(sent, field="sent", minimum=0, maximum=MAX_SEQ)
    if inflight_breakdown is None:  # one merged breakdown of everything held
        players = held_breakdown_map(breakdown, held=pending + inflight_amount, platform_ids=platform_ids)
        flight: dict[str, int] = {}
    else:
        players = held_breakdown_map(breakdown, held=pending, platform_ids=platform_ids)
        flight = held_breakdown_map(
            inflight_breakdown, held=inflight_amount, platform_ids=platform_ids, field="inflight.breakdown"
        )
    return authority.heartbeat_call(
        boss_id=boss_id,
        shard_key=shard_key,
        epoch=epoch,
        pending=pending,
        inflight_seq=inflight_seq,
        inflight_amount=inflight_amount,
        breakdown=players,
        inflight_breakdown=flight,
        sent=sent,
    )


def _heartbeat_result(out: authority.HeartbeatOutcome, boss_id: int) -> HeartbeatResult:
    if out.code == "fenced":
        raise _fenced(out.detail, last_seq=out.last_seq, credited=out.credited)
    if out.code == "no_boss":
        raise UnknownBoss(f"boss {boss_id} has no live authority")
    return HeartbeatResult(out.last_seq, int(out.detail), out.durable_seq, out.attributed)


async def aheartbeat_record(  # noqa: PLR0913 - the heartbeat frame's fields, all keyword-only
    *,
    boss_id: int,
    shard_key: str,
    epoch: int,
    pending: int,
    inflight_seq: int = 0,
    inflight_amount: int = 0,
    breakdown: Mapping[str, int] | None = None,
    platform_ids: bool = False,
    inflight_breakdown: Mapping[str, int] | None = None,
    sent: int | None = None,
) -> HeartbeatResult:
    """Record a session's sign of life and the damage it still holds unacknowledged.

    ``breakdown`` is the optional per-player part of what it holds: of ``pending`` when
    ``inflight_breakdown`` (the in-flight delta's players, counted only while that delta is
    not accepted) is given, else of pending + in flight (trimmed by order when the in-flight
    delta turns out accepted). A fair crash saga credits it to those players
    (docs/faults.md); ``platform_ids`` as for :func:`adelta_ingest`. ``sent``: the
    client's highest sent seq when it made the heartbeat; one that arrives after a delta it did
    not know of was accepted is stale and only counts as a sign of life. In ``replica``
    durability the reply waits for a replica too: its ``last_seq`` tells the client which
    in-flight delta was accepted, an acknowledgement like an ingest's.
    """
    call = _heartbeat_call(
        boss_id,
        shard_key,
        epoch,
        pending,
        inflight_seq,
        inflight_amount,
        breakdown,
        platform_ids,
        inflight_breakdown,
        sent,
    )
    try:
        out = await durability.aheartbeat_acknowledged(
            get_async_redis(), call, ack_durability(), mark_key=BossKeys(boss_id).durable
        )
        return _heartbeat_result(out, boss_id)
    except REDIS_DOWN as exc:
        metrics.AUTHORITY_ERRORS.labels(op="heartbeat").inc()
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
