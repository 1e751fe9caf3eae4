"""``/ws/bosses/<slug>/``: anyone takes a boss's live state (docs/protocol.md).

On connect: a ``hello`` frame, then a ``state`` snapshot, then one ``state`` per changed
tick and the ``phase`` / ``defeated`` / ``expired`` events, forwarded as published (the
text is serialized once by the tick and never re-encoded here). Delivery goes through the
process's fan-out hub (transport/hub.py): versions only increase per socket and a slow
socket gets the latest state instead of a queue.

This consumer has no channel layer at all (transport.consumers.base.DirectDispatchMixin): a viewer
costs no Redis subscription and no group membership; the hub holds one subscription per
boss per process.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from bosses.selectors import boss_get
from core import authority, messages
from core.errors import AuthorityUnavailable, LiveOpsError, RateLimited, UnknownBoss, UnknownType
from core.redis import REDIS_DOWN
from core.wire import FrameWindow, encode, error_frame, parse_frame
from shards.services import DATABASE_DOWN
from transport.consumers.base import DirectDispatchMixin, GuardedSocketMixin, SocketGaugeMixin
from transport.fastpath import writer_for
from transport.hub import Subscriber, get_hub
from worldboss_sdk.protocol import CloseCode

# What BossEncounter.slug can hold (Django's SlugField, max_length 64)
SLUG_RE = re.compile(r"[-a-zA-Z0-9_]{1,64}")

# A viewer has nothing to say but "ping"; more than this many frames per second is abuse.
VIEWER_FRAMES_PER_S = 20
VIEWER_MAX_BAD_FRAMES = 10
BOSS_CACHE_TTL_S = 5.0
# While the database is unreachable the last copy read is served (stale-while-error) and the
# database is asked again at most this often per boss and process.
BOSS_CACHE_RETRY_S = 1.0


@dataclass(frozen=True)
class BossRef:
    """What the live endpoints need of a boss's configuration (cached per process)."""

    id: int
    slug: str
    name: str
    max_hp: int
    status: str
    final_hp: int | None
    final_version: int | None
    min_damage: int
    max_damage: int
    attacks_per_second: int
    heartbeat_interval_ms: int
    allow_guests: bool
    authority_gen: int = 0
    updated_at: datetime | None = None


_boss_cache: dict[str, tuple[float, BossRef]] = {}
# Single flight: concurrent misses for one slug (a connect burst of thousands of viewers)
# share one lookup instead of queueing thousands on the one thread sync ORM calls run on.
_boss_lookups: dict[str, asyncio.Future] = {}


def _boss_ref_sync(slug: str) -> BossRef:
    b = boss_get(slug=slug)
    return BossRef(
        b.pk,
        b.slug,
        b.name,
        b.max_hp,
        b.status,
        b.final_hp,
        b.final_version,
        b.min_damage,
        b.max_damage,
        b.attacks_per_second,
        b.heartbeat_interval_ms,
        b.allow_guests,
        b.authority_gen,
        b.updated_at,
    )


async def boss_ref_get(*, slug: str, fresh: bool = False) -> BossRef:
    """The boss with ``slug`` (cached ~5 s per process) or :class:`UnknownBoss`.

    When the database cannot be reached, the last copy this process read is returned (the
    hot path runs on Redis alone through a database outage, docs/faults.md); without one,
    :class:`AuthorityUnavailable` (try again).
    """
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        # checked before any query: a NUL byte would make PostgreSQL raise, not miss
        raise UnknownBoss(f"no boss with slug {slug[:80] if isinstance(slug, str) else slug!r}")
    hit = _boss_cache.get(slug)
    if hit is not None and not fresh and time.monotonic() - hit[0] < BOSS_CACHE_TTL_S:
        return hit[1]
    pending = _boss_lookups.get(slug)
    if pending is not None and pending.get_loop() is asyncio.get_running_loop():
        return await asyncio.shield(pending)
    fut = _boss_lookups[slug] = asyncio.get_running_loop().create_future()
    try:
        ref = await _boss_ref_read(slug)
    except BaseException as exc:
        fut.set_exception(exc)
        fut.exception()  # retrieved: waiters re-raise it
        raise
    finally:
        if _boss_lookups.get(slug) is fut:
            del _boss_lookups[slug]
    fut.set_result(ref)
    return ref


async def _boss_ref_read(slug: str) -> BossRef:
    """Read the boss from the database into the cache; the cached copy if the database is away."""
    now = time.monotonic()
    try:
        ref = await database_sync_to_async(_boss_ref_sync)(slug)
    except DATABASE_DOWN as exc:
        hit = _boss_cache.get(slug)
        if hit is None:
            raise AuthorityUnavailable(
                f"the database is unreachable and this process has no copy of boss {slug!r}: {exc}"
            ) from exc
        # Served as is for BOSS_CACHE_RETRY_S more before the database is asked again.
        _boss_cache[slug] = (now - BOSS_CACHE_TTL_S + BOSS_CACHE_RETRY_S, hit[1])
        return hit[1]
    _boss_cache[slug] = (now, ref)
    return ref


def snapshot_message(ref: BossRef, state: authority.BossState | None) -> messages.StateFrame:
    """The ``state`` snapshot: the authority's if it exists, else the SQL record's."""
    if state is not None:
        return state.as_message()
    return messages.record_state_frame(record=ref)


async def boss_snapshot(ref: BossRef) -> dict:
    """Read the live snapshot of ``ref`` (one HMGET, shared by concurrent connects)."""
    return snapshot_message(ref, await get_hub().snapshot(ref.id))


class BossStateConsumer(GuardedSocketMixin, SocketGaugeMixin, DirectDispatchMixin, AsyncWebsocketConsumer):
    """Read-only live state of one boss; see the module docstring (no channel layer: the hub
    does the fan-out)."""

    metrics_endpoint = "state"
    boss: BossRef | None = None
    subscriber: Subscriber | None = None

    async def connect(self) -> None:
        await self.accept()
        slug = self.scope["url_route"]["kwargs"].get("slug", "")
        try:
            self.boss = await boss_ref_get(slug=slug)
        except (UnknownBoss, AuthorityUnavailable) as err:
            code = CloseCode.UNKNOWN_BOSS if isinstance(err, UnknownBoss) else CloseCode.TRY_AGAIN
            await self.send(text_data=error_frame(err, close=code))
            await self.close(code=code)
            return
        self._window = FrameWindow()
        self._bad = 0
        await self.send(text_data=encode(messages.boss_hello_frame(boss=self.boss.slug, name=self.boss.name)))
        base_send = self.base_send

        async def send(text: str) -> None:
            await base_send({"type": "websocket.send", "text": text})

        self.subscriber = Subscriber(send, writer_for(base_send))
        hub = get_hub()
        await hub.subscribe(self.boss.id, self.subscriber)
        # Subscribed first, snapshot second: nothing published in between is missed, and
        # the subscriber's version filter drops whichever of the two is older.
        try:
            snap = await boss_snapshot(self.boss)
        except REDIS_DOWN as exc:
            await self.send(
                text_data=error_frame(
                    AuthorityUnavailable(f"Redis is unreachable: {exc}"), close=CloseCode.TRY_AGAIN
                )
            )
            await self.close(code=CloseCode.TRY_AGAIN)
            return
        self.subscriber.offer(encode(snap), version=int(snap["version"]), is_state=True)

    async def disconnect(self, code: int) -> None:
        if self.boss is not None and self.subscriber is not None:
            await get_hub().unsubscribe(self.boss.id, self.subscriber)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.subscriber is None:
            return
        if self._window.add() > VIEWER_FRAMES_PER_S:
            await self.send(
                text_data=error_frame(
                    RateLimited(f"more than {VIEWER_FRAMES_PER_S} frames per second"),
                    close=CloseCode.RATE_LIMITED,
                )
            )
            await self.close(code=CloseCode.RATE_LIMITED)
            return
        try:
            frame = parse_frame(text_data, bytes_data)
            if frame["type"] != "ping":
                raise UnknownType(
                    f"unknown frame type {frame['type'][:40]!r}; this endpoint only takes 'ping'",
                    field="type",
                )
        except LiveOpsError as err:
            self._bad += 1
            close = (
                CloseCode.TOO_LARGE
                if err.code == "too_large"
                else CloseCode.MALFORMED
                if self._bad >= VIEWER_MAX_BAD_FRAMES
                else None
            )
            await self.send(text_data=error_frame(err, close=close))
            if close is not None:
                await self.close(code=close)
            return
        await self.send(
            text_data=encode(
                messages.pong_frame(
                    version=self.subscriber.version,
                    id=frame.get("id") if isinstance(frame.get("id"), (int, str)) else None,
                    echo_id=True,
                )
            )
        )
