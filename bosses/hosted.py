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

The rate limit holds across processes: a per-process token bucket is a cheap first gate,
then every attack it lets through is judged by the authority Redis (``rate.lua``, GCRA on a
per-player key with an expiry), batched: one script call per boss carries every attack that
arrived while the previous call was in flight. When the authority does not answer within
``RATE_CHECK_TIMEOUT_S`` the per-process bucket alone decides for ``RATE_DOWN_S`` (attacks
never wait on a Redis that is away; they buffer like the rest).

The same script call holds the boss's cap on distinct player ids (``MAX_PLAYERS_PER_BOSS``,
the boss's roster set): a new id past it is refused with ``too_many_players``, players
already in the roster keep playing. Only hosted shards (``Shard.kind == hosted``) get a
hosted session: a game server's shard key never has its epoch or status moved by players.

Shutdown (:func:`hosted_shards_shutdown`, run by the ASGI ``lifespan`` scope,
transport/lifespan.py): after the server closed every socket, each hosted shard of the process
flushes what it holds, heartbeats ``pending`` 0 and ends its sessions with reason ``left``, as a
game server's ``bye`` does. A process killed without it leaves its sessions to the crash scan
(reason ``crashed``).

The hosted shard is the platform playing a game server for its own players, so it lives with
the fight it feeds (the bosses app) and knows no socket: the gateway consumer
(transport/consumers/gateway.py) hands it each attack and sends the verdict.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from bosses.models import BossEncounter
from bosses.sagas.crash import session_end
from core import authority, keys, metrics
from core.errors import (
    AuthorityUnavailable,
    BossNotLive,
    Fenced,
    RateLimited,
    SeqGap,
    TooManyPlayers,
    UnknownBoss,
    UnknownShard,
    WrongShardKind,
)
from core.redis import get_async_redis
from shards.models import Shard, ShardKind
from shards.services import adelta_ingest, aheartbeat_record, shard_session_open
from worldboss_sdk.buffer import LocalBuffer
from worldboss_sdk.protocol import ENDED_STATUSES

logger = logging.getLogger(__name__)

GATEWAY_TICK_MS = 100
GATEWAY_MAX_PENDING_DAMAGE = 2**40
# Distinct players waiting in one boss buffer: the boss's cap on player ids
# (settings.MAX_PLAYERS_PER_BOSS), so the table can hold every id the roster admitted and a
# flood of new ids is refused by the roster (too_many_players), never by this table
# (buffer_full for players already fighting). Read per session: tests lower the cap.
LIMITER_IDLE_S = 10.0  # forget a player's bucket after this long
# The cross-process check (rate.lua): attacks per script call at most, how long a batch may
# take before the per-process bucket decides alone, and for how long it then does.
RATE_BATCH_MAX = 500
RATE_LINGER_S = 0.005
RATE_CHECK_TIMEOUT_S = 0.1
RATE_DOWN_S = 1.0
SHUTDOWN_FLUSH_TRIES = 5
CLOSE_TRIES = 10  # cancellations of the loop task, CLOSE_WAIT_S apart, before giving up on it
CLOSE_WAIT_S = 0.5
SHUTDOWN_END_TRIES = 5  # the saga is idempotent: a retry after a failed attempt settles once
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
        self.buffer = LocalBuffer(
            max_pending=GATEWAY_MAX_PENDING_DAMAGE, max_players=max(1, settings.MAX_PLAYERS_PER_BOSS)
        )
        self.buffer.keeps = True  # the archive reports durable seqs: keep acked deltas until then
        self.last_heartbeat = 0.0
        self.status = "live"
        self.accepted = 0
        self.fences = 0


def _db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` run in Django's thread for sync code, with stale database connections closed
    before and after: this loop lives as long as the process, and a connection the database
    dropped in between must not be reused."""

    def call(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call)


def _sql_status_sync(boss_id: int) -> str | None:
    return BossEncounter.objects.filter(pk=boss_id).values_list("status", flat=True).first()


def _open_session_sync(shard_key: str) -> int:
    shard = Shard.objects.filter(key=shard_key).first()
    if shard is None:
        raise UnknownShard(f"unknown shard {shard_key!r}")
    if shard.kind != ShardKind.HOSTED:
        # a game server's epoch and status belong to the game server alone
        raise WrongShardKind(f"shard {shard_key} belongs to a game server; players cannot attack on it")
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
        # boss id -> attacks waiting for the cross-process check: (player, future of its verdict)
        self._rate_waiting: dict[int, list[tuple[str, asyncio.Future[int | None]]]] = {}
        self._rate_tasks: dict[int, asyncio.Task] = {}
        self._rate_down_until = 0.0
        self._stopping = False

    # --- attacks ------------------------------------------------------------------------

    async def attack(self, *, boss, player: str) -> tuple[int, int]:
        """One player attack: ``(damage, epoch)``; raises RateLimited/BufferFull/BossNotLive."""
        sess = await self._session(boss)
        if sess.status != "live":
            raise BossNotLive(f"the boss is {sess.status}; attacks are refused", status=sess.status)
        self._take_token(boss, player)  # the cheap first gate: over the rate here is over it everywhere
        wait_ms = await self._global_verdict(boss, player)
        if wait_ms == authority.RATE_TOO_MANY_PLAYERS:
            self._give_token_back(boss, player)
            raise TooManyPlayers(
                f"this boss accepts no new players (at most {settings.MAX_PLAYERS_PER_BOSS:,}); "
                "players already in the fight keep playing"
            )
        if wait_ms:
            self._give_token_back(boss, player)
            rate = max(1, boss.attacks_per_second)
            raise RateLimited(f"at most {rate} attacks per second", retry_after_ms=wait_ms)
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

    def _give_token_back(self, boss, player: str) -> None:
        # refused by the shared limit: this process's bucket must not count it as taken,
        # or it would later refuse attacks the shared limit allows
        bucket = self._buckets.get((boss.id, player))
        if bucket is not None:
            bucket.tokens = min(float(max(1, boss.attacks_per_second)), bucket.tokens + 1.0)

    async def _global_verdict(self, boss, player: str) -> int | None:
        """The shared limit's verdict on one attack: 0 allowed, ms to wait,
        ``RATE_TOO_MANY_PLAYERS`` (a new id past the boss's cap), or None (the authority did
        not answer in time: the per-process bucket decided alone)."""
        if not settings.HOSTED_SHARED_RATE_LIMIT or time.monotonic() < self._rate_down_until:
            return None
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._rate_waiting.setdefault(boss.id, []).append((player, fut))
        task = self._rate_tasks.get(boss.id)
        if task is None or task.done():
            self._rate_tasks[boss.id] = asyncio.get_running_loop().create_task(self._rate_flush(boss))
        return await fut

    async def _rate_flush(self, boss) -> None:
        # One script call in flight per boss; what arrives meanwhile goes in the next one, so
        # the calls grow with the load instead of their number (one round trip per batch).
        waiting = self._rate_waiting.get(boss.id, [])
        # Linger a moment before the first call: under load the batch fills (one round trip
        # for many attacks, a fraction of the per-call cost each); idle, an attack waits 5 ms.
        await asyncio.sleep(RATE_LINGER_S)
        while waiting:
            batch = waiting[:RATE_BATCH_MAX]
            del waiting[:RATE_BATCH_MAX]
            call = authority.rate_call(
                boss_id=boss.id,
                players=[p for p, _ in batch],
                attacks_per_second=boss.attacks_per_second,
                max_players=settings.MAX_PLAYERS_PER_BOSS,
            )
            verdicts: list[int | None]
            try:
                verdicts = list(
                    await asyncio.wait_for(authority.arun(get_async_redis(), call), RATE_CHECK_TIMEOUT_S)
                )
            except Exception as exc:  # away or slow: never make an attack wait on it
                if time.monotonic() >= self._rate_down_until:
                    logger.warning(
                        "hosted shard %s: shared rate limit unavailable (%s: %s); per-process "
                        "limit only for %.0f s",
                        self.shard_key,
                        type(exc).__name__,
                        exc,
                        RATE_DOWN_S,
                        extra={"shard": self.shard_key, "boss": boss.slug},
                    )
                self._rate_down_until = time.monotonic() + RATE_DOWN_S
                verdicts = [None] * len(batch)
            for (_, fut), verdict in zip(batch, verdicts, strict=True):
                if not fut.done():
                    fut.set_result(verdict)

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
            sess.epoch = await _db(_open_session_sync)(self.shard_key)
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
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
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
            if status is None and await _db(_sql_status_sync)(boss_id) not in (
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
                platform_ids=True,  # its players are users, guests and ticket holders
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
            if await _db(_sql_status_sync)(sess.boss.id) in (None, "draft"):
                sess.buffer.drop_all()  # reset or deleted: the damage has no fight to go to
            return  # else the authority is being restored: same seq next tick
        sess.buffer.acked(delta.seq)
        sess.accepted += delta.amount
        metrics.DAMAGE_ACCEPTED.labels(boss=sess.boss.slug).inc(delta.amount)

    async def _heartbeat(self, sess: _BossSession) -> None:
        inflight = sess.buffer.inflight
        held_by, flight = sess.buffer.held_parts()  # a fair crash saga credits these players
        try:
            beat = await aheartbeat_record(
                boss_id=sess.boss.id,
                shard_key=self.shard_key,
                epoch=sess.epoch,
                pending=sess.buffer.waiting,
                inflight_seq=inflight.seq if inflight else 0,
                inflight_amount=inflight.amount if inflight else 0,
                breakdown=held_by,
                inflight_breakdown=flight if inflight else None,
                sent=sess.buffer.next_seq - 1,
                platform_ids=True,
            )
            sess.buffer.durable(beat.durable_seq)
            sess.buffer.behind(beat.last_seq)  # a rollback lost acked deltas: re-send them
        except Fenced as err:
            await self._refence(sess, err)
        except (AuthorityUnavailable, UnknownBoss):
            pass

    async def _refence(self, sess: _BossSession, err: Fenced) -> None:
        """This process's epoch was retired: settle locally, then continue under a new epoch."""
        credited = err.extra.get("credited")
        sess.buffer.fenced(
            last_seq=int(err.extra.get("last_seq", 0)),
            settled=int(err.extra.get("settled", 0)),
            credited=credited if isinstance(credited, dict) else None,
        )
        sess.fences += 1
        try:
            sess.epoch = await _db(_open_session_sync)(self.shard_key)
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

    async def shutdown(self) -> dict[str, int]:
        """End this process's sessions cleanly, as a game server's ``bye`` does: stop the loop,
        flush what is held, heartbeat ``pending`` 0, then end each session with reason
        ``left`` (a crash saga that settles nothing when nothing is held). Returns
        ``{boss slug: amount settled}``. Called after the server closed every socket (no attack
        arrives meanwhile); :func:`hosted_shards_shutdown` also forgets the shard."""
        await self.close(flush=False)
        for _ in range(SHUTDOWN_FLUSH_TRIES):
            if not any(s.buffer.pending for s in self.sessions.values()):
                break
            await self.tick()
        settled: dict[str, int] = {}
        for sess in list(self.sessions.values()):
            if sess.epoch is None:
                continue
            if sess.buffer.pending:
                # the authority would not take it: the session's policy settles what is held
                logger.warning(
                    "hosted shard %s: ending a session that still holds %d damage",
                    self.shard_key,
                    sess.buffer.pending,
                    extra={"shard": self.shard_key, "boss": sess.boss.slug, "epoch": sess.epoch},
                )
            await self._heartbeat(sess)  # pending 0 once flushed: nothing left to settle
            for attempt in range(SHUTDOWN_END_TRIES):
                try:
                    settled.update(
                        await _db(session_end)(
                            shard_key=self.shard_key, epoch=sess.epoch, reason="left", boss_ids=[sess.boss.id]
                        )
                    )
                    break
                except Exception:  # e.g. a busy database; at last the crash scan ends it (crashed)
                    if attempt + 1 < SHUTDOWN_END_TRIES:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    logger.exception(
                        "hosted shard %s: could not end its session",
                        self.shard_key,
                        extra={"shard": self.shard_key, "boss": sess.boss.slug, "epoch": sess.epoch},
                    )
        self.sessions.clear()
        return settled

    async def close(self, *, flush: bool = True) -> None:
        """Stop the loop (after one last tick when ``flush``)."""
        task, self._task = self._task, None
        if task is not None:
            # The flag ends the loop even when a cancellation is swallowed on its way (seen
            # under load: one cancel was lost inside a Redis or database call, the loop slept
            # on and a bare ``await task`` never returned, hanging uvicorn's shutdown).
            self._stopping = True
            for _ in range(CLOSE_TRIES):
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=CLOSE_WAIT_S)
                if done:
                    if not task.cancelled():
                        task.exception()  # retrieved: a failed loop was logged by _run already
                    break
            else:
                logger.error("hosted shard %s: its loop did not stop", self.shard_key)
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


async def hosted_shards_shutdown() -> dict[str, dict[str, int]]:
    """End every hosted session of this process (event loop): :meth:`HostedShard.shutdown`
    for each hosted shard, concurrently. Returns ``{shard key: {boss slug: settled}}``."""
    shards = _gateways.pop(asyncio.get_running_loop(), {})
    results = await asyncio.gather(*(s.shutdown() for s in shards.values()), return_exceptions=True)
    out: dict[str, dict[str, int]] = {}
    for key, result in zip(shards, results, strict=True):
        if isinstance(result, BaseException):
            logger.error("hosted shard %s: shutdown failed: %r", key, result, extra={"shard": key})
        else:
            out[key] = result
    return out
