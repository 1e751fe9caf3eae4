"""The platform-hosted shard: players attack over a WebSocket, the server buffers like a game server.

One :class:`HostedShard` per shard key per ASGI process (per event loop). For every boss it
serves it opens its OWN session (its own epoch from :func:`shard_session_open`), so several
processes serving one shard never share a seq counter and dedupe and fencing stay exact.

Per attack: the damage is drawn uniformly from the boss's ``[min_damage, max_damage]``, the
player is rate-limited (token bucket of ``attacks_per_second``, burst of one second) and the
damage goes into the session's :class:`~worldboss_sdk.buffer.LocalBuffer` in memory (O(1), never a
network call). A loop ticks every ``GATEWAY_TICK_MS``: one delta per boss with the per-player
breakdown, the same seq re-sent until accepted, and a heartbeat every boss
``heartbeat_interval_ms`` with ``pending`` and the in-flight delta. When the authority is
away the buffer grows up to its bound, past which attacks get ``buffer_full``; nothing blocks.

Limitation (docs/protocol.md): the rate limit is per process; behind a load balancer
without sticky sessions a player opening sockets on N processes gets up to N times the rate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from dataclasses import dataclass

from channels.db import database_sync_to_async

from bosses.models import BossEncounter
from core import keys, metrics
from core.errors import (
    AuthorityUnavailable,
    BossNotLive,
    Fenced,
    RateLimited,
    SeqGap,
    UnknownBoss,
    UnknownShard,
)
from core.redis import get_async_redis
from shards.models import Shard
from shards.services import adelta_ingest, aheartbeat_record, shard_session_open
from worldboss_sdk.buffer import LocalBuffer
from worldboss_sdk.protocol import ENDED_STATUSES

logger = logging.getLogger(__name__)

GATEWAY_TICK_MS = 100
GATEWAY_MAX_PENDING_DAMAGE = 2**40
GATEWAY_MAX_PLAYERS = 20_000  # distinct players waiting in one boss buffer
LIMITER_IDLE_S = 10.0  # forget a player's bucket after this long
_rng = random.Random()  # uniform damage; not a secret, so no syscall per attack


@dataclass
class _Bucket:
    tokens: float
    at: float


class _BossSession:
    """One boss's session of this hosted shard: epoch, buffer, heartbeat clock, status."""

    def __init__(self, boss) -> None:
        self.boss = boss
        self.epoch: int | None = None
        self.buffer = LocalBuffer(max_pending=GATEWAY_MAX_PENDING_DAMAGE, max_players=GATEWAY_MAX_PLAYERS)
        self.buffer.keeps = True  # the archive reports durable seqs: keep acked deltas until then
        self.last_heartbeat = 0.0
        self.status = "live"
        self.accepted = 0
        self.fences = 0


def _sql_status_sync(boss_id: int) -> str | None:
    return BossEncounter.objects.filter(pk=boss_id).values_list("status", flat=True).first()


def _open_session_sync(shard_key: str) -> int:
    shard = Shard.objects.filter(key=shard_key).first()
    if shard is None:
        raise UnknownShard(f"unknown shard {shard_key!r}")
    return shard_session_open(shard=shard).epoch


class HostedShard:
    """The in-memory buffer, rate limiter and tick/heartbeat loop of one hosted shard."""

    def __init__(self, shard_key: str, *, tick_ms: int = GATEWAY_TICK_MS) -> None:
        self.shard_key = shard_key
        self.tick_s = tick_ms / 1000
        self.sessions: dict[int, _BossSession] = {}
        self._buckets: dict[tuple[int, str], _Bucket] = {}
        self._task: asyncio.Task | None = None
        self._opening: dict[int, asyncio.Future] = {}
        self._last_prune = time.monotonic()
        self._tick_lock = asyncio.Lock()

    # --- attacks ------------------------------------------------------------------------

    async def attack(self, *, boss, player: str) -> tuple[int, int]:
        """One player attack: ``(damage, epoch)``; raises RateLimited/BufferFull/BossNotLive."""
        sess = await self._session(boss)
        if sess.status != "live":
            raise BossNotLive(f"the boss is {sess.status}; attacks are refused", status=sess.status)
        self._take_token(boss, player)
        damage = _rng.randint(boss.min_damage, max(boss.min_damage, boss.max_damage))
        sess.buffer.add(damage, player)
        return damage, sess.epoch or 0

    def _take_token(self, boss, player: str) -> None:
        now = time.monotonic()
        rate = max(1, boss.attacks_per_second)
        key = (boss.id, player)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(rate), now)
        else:
            bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if bucket.tokens < 1.0:
            retry_ms = int((1.0 - bucket.tokens) / rate * 1000) + 1
            raise RateLimited(f"at most {rate} attacks per second", retry_after_ms=retry_ms)
        bucket.tokens -= 1.0

    async def _session(self, boss) -> _BossSession:
        sess = self.sessions.get(boss.id)
        if sess is not None and sess.epoch is not None:
            return sess
        waiting = self._opening.get(boss.id)
        if waiting is not None:
            await asyncio.shield(waiting)
            return self.sessions[boss.id]
        # Register before the first await: a burst of first attacks must share ONE session.
        # (Registering after it let every attack of the burst open its own epoch; all but the
        # last were orphaned holding acked damage.)
        fut = self._opening[boss.id] = asyncio.get_running_loop().create_future()
        try:
            status = await self._read_status(boss.id) or boss.status
            if status != "live":  # no session (no epoch) is opened for a boss that is not live
                raise BossNotLive(f"the boss is {status}; attacks are refused", status=status)
            sess = _BossSession(boss)
            sess.epoch = await database_sync_to_async(_open_session_sync)(self.shard_key)
            sess.status = status
            self.sessions[boss.id] = sess
            fut.set_result(True)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it through shield
            raise
        finally:
            self._opening.pop(boss.id, None)
        self._ensure_running()
        return sess

    # --- the loop -----------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "hosted shard %s: tick failed", self.shard_key, extra={"shard": self.shard_key}
                )
            await asyncio.sleep(max(0.0, self.tick_s - (time.monotonic() - started)))

    async def tick(self) -> None:
        """One shard tick: status, one delta per boss, heartbeats when due."""
        async with self._tick_lock:
            await self._tick()

    async def flush_now(self) -> None:
        """Send what is pending at once (a player left; on shutdown every socket leaves)."""
        if any(s.buffer.pending for s in self.sessions.values()):
            await self.tick()

    async def _tick(self) -> None:
        now = time.monotonic()
        for boss_id, sess in list(self.sessions.items()):
            status = await self._read_status(boss_id)
            if status is None and await database_sync_to_async(_sql_status_sync)(boss_id) not in (
                None,
                "draft",
            ):
                # A fight with no authority in Redis that SQL still runs: it is being restored
                # from the archive. Keep everything (acked attacks too) for the re-send.
                status = "recovering"
            if status is None or status in ENDED_STATUSES:
                sess.status = status or "gone"
                sess.buffer.drop_all()
                del self.sessions[boss_id]
                continue
            sess.status = status
            await self._send_delta(sess)
            if now - sess.last_heartbeat >= sess.boss.heartbeat_interval_ms / 1000:
                await self._heartbeat(sess)
                sess.last_heartbeat = now
        if now - self._last_prune > LIMITER_IDLE_S:
            self._last_prune = now
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < LIMITER_IDLE_S}

    async def _read_status(self, boss_id: int) -> str | None:
        try:
            return await get_async_redis().hget(keys.BossKeys(boss_id).state, "status")
        except Exception:
            return "live"  # authority away: keep buffering; the ingest retries tell the truth

    async def _send_delta(self, sess: _BossSession) -> None:
        delta = sess.buffer.take()
        if delta is None:
            return
        try:
            await adelta_ingest(
                boss_id=sess.boss.id,
                shard_key=self.shard_key,
                epoch=sess.epoch,
                seq=delta.seq,
                amount=delta.amount,
                breakdown=delta.breakdown or None,
            )
        except AuthorityUnavailable:
            return  # same seq next tick
        except BossNotLive:
            return  # paused: the delta waits (ended bosses are dropped by the status check)
        except Fenced as err:
            await self._refence(sess, err)
            return
        except SeqGap as err:  # the boss was reset under us (its dedupe state is gone): realign
            sess.buffer.realign(int(err.extra.get("last_seq", 0)))
            return
        except UnknownBoss:
            if await database_sync_to_async(_sql_status_sync)(sess.boss.id) in (None, "draft"):
                sess.buffer.drop_all()  # reset or deleted: the damage has no fight to go to
            return  # else the authority is being restored: same seq next tick
        sess.buffer.acked(delta.seq)
        sess.accepted += delta.amount
        metrics.DAMAGE_ACCEPTED.labels(boss=sess.boss.slug).inc(delta.amount)

    async def _heartbeat(self, sess: _BossSession) -> None:
        inflight = sess.buffer.inflight
        try:
            beat = await aheartbeat_record(
                boss_id=sess.boss.id,
                shard_key=self.shard_key,
                epoch=sess.epoch,
                pending=sess.buffer.waiting,
                inflight_seq=inflight.seq if inflight else 0,
                inflight_amount=inflight.amount if inflight else 0,
            )
            sess.buffer.durable(beat.durable_seq)
            sess.buffer.behind(beat.last_seq)  # a rollback lost acked deltas: re-send them
        except Fenced as err:
            await self._refence(sess, err)
        except (AuthorityUnavailable, UnknownBoss):
            pass

    async def _refence(self, sess: _BossSession, err: Fenced) -> None:
        """This process's epoch was retired: settle locally, then continue under a new epoch."""
        sess.buffer.fenced(
            last_seq=int(err.extra.get("last_seq", 0)), settled=int(err.extra.get("settled", 0))
        )
        sess.fences += 1
        try:
            sess.epoch = await database_sync_to_async(_open_session_sync)(self.shard_key)
        except Exception:
            logger.exception(
                "hosted shard %s: could not open a new session",
                self.shard_key,
                extra={"shard": self.shard_key, "boss": sess.boss.slug, "epoch": sess.epoch},
            )

    def stats(self) -> dict:
        """Per-boss buffer figures (for the ops view and tests)."""
        return {
            boss_id: {
                "epoch": s.epoch,
                "pending": s.buffer.pending,
                "inflight": s.buffer.inflight.amount if s.buffer.inflight else 0,
                "accepted": s.accepted,
                "status": s.status,
                "fences": s.fences,
            }
            for boss_id, s in self.sessions.items()
        }

    async def close(self, *, flush: bool = True) -> None:
        """Stop the loop (after one last tick when ``flush``)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if flush:
            for _ in range(3):
                await self.tick()


_gateways: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, HostedShard]] = (
    weakref.WeakKeyDictionary()
)


def hosted_shard_get(*, shard_key: str) -> HostedShard:
    """This process's (event loop's) hosted shard for ``shard_key``."""
    loop = asyncio.get_running_loop()
    shards = _gateways.setdefault(loop, {})
    shard = shards.get(shard_key)
    if shard is None:
        shard = shards[shard_key] = HostedShard(shard_key)
    return shard
