"""``/ws/ops/bosses/<slug>/``: the operator dashboard's live feed (staff only).

On connect: ``hello``, then an ``ops`` snapshot (state, per-shard rows, DPS, tick lag,
ledger, latest sagas and events, and the HP series for the chart). After that:

* every ``state`` / ``phase`` / ``defeated`` / ``expired`` message as the tick publishes it,
  through the process's fan-out hub (transport/hub.py), same text, versions only rising;
* a fresh ``ops`` message every ``OPS_REFRESH_INTERVAL_MS`` (shard health and heartbeat
  ages change without any tick, so they are polled, not pushed). The poll is shared: every
  operator socket of a boss in this process joins one feed (transport/ops_feed.py) that reads
  the snapshot once per refresh and sends the same text to all of them
  (``OPS_FEED_SHARED=0`` gives each socket its own loop, as before; the bench compares both).

``/ws/ops/`` (:class:`OpsOverviewConsumer`) feeds the ``/ops/`` overview the same way: one
``overview`` message per ``OVERVIEW_REFRESH_INTERVAL_MS`` with every boss, one feed per
process whatever the number of open overview pages.

Operators only: an anonymous socket is closed with 4401; a signed-in account that is not
active staff with ``bosses.view_bossencounter`` (or ``bosses.operate_boss``), or a page of a
foreign ``Origin``, with 4403; an unknown boss with 4404 (each after an ``error`` frame). The only client frame is
``ping`` (and ``refresh``, which sends an ``ops`` message at once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from bosses.ops_selectors import OverviewTracker, ops_overview_live, ops_snapshot
from bosses.selectors import boss_get
from core import messages
from core.clock import Clock
from core.errors import (
    AuthorityUnavailable,
    Forbidden,
    LiveOpsError,
    RateLimited,
    Unauthorized,
    UnknownBoss,
    UnknownType,
)
from core.redis import REDIS_DOWN, get_async_redis
from core.wire import FrameWindow, encode, error_frame, parse_frame
from transport.consumers.base import GuardedSocketMixin, SocketGaugeMixin
from transport.hub import Subscriber, get_hub
from transport.ops_feed import feed_join, feed_leave
from transport.permissions import WATCH_BOSS, can_watch, origin_problem
from worldboss_sdk.protocol import CloseCode, ErrorCode

logger = logging.getLogger(__name__)

OPS_REFRESH_INTERVAL_MS = 500
OVERVIEW_REFRESH_INTERVAL_MS = 1000
OPS_FRAMES_PER_S = 20
OPS_MAX_BAD_FRAMES = 10


def _ops_snapshot_sync(slug: str, with_series: bool, clock: Clock | None = None) -> dict:
    return ops_snapshot(boss=boss_get(slug=slug), with_series=with_series, clock=clock)


def _boss_id_sync(slug: str) -> int:
    return boss_get(slug=slug).pk


def _feed_shared() -> bool:
    return bool(getattr(settings, "OPS_FEED_SHARED", True))


async def _staff_or_refuse(consumer: Any) -> bool:
    """True for an account allowed to watch (transport/permissions.py) on a page of this site;
    otherwise the socket is refused (4403 for a foreign Origin or a missing permission, 4401
    for no account)."""
    if problem := origin_problem(consumer.scope):
        await consumer._refuse(Forbidden(problem), CloseCode.FORBIDDEN)
        return False
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        await consumer._refuse(
            Unauthorized("sign in as staff (/admin/login/) to watch a fight"), CloseCode.UNAUTHORIZED
        )
        return False
    if not await database_sync_to_async(can_watch)(user):
        await consumer._refuse(
            Forbidden(f"the operator feed needs a staff account with the {WATCH_BOSS} permission"),
            CloseCode.FORBIDDEN,
        )
        return False
    return True


class OpsBossConsumer(GuardedSocketMixin, SocketGaugeMixin, AsyncWebsocketConsumer):
    """Staff-only live feed of one boss; see the module docstring."""

    metrics_endpoint = "ops"
    channel_layer_alias = "__no_channel_layer__"  # the hub does the fan-out, no layer
    # "Now" of the ops messages (heartbeat ages, DPS, tick lag); None: Redis TIME. A test
    # routes ``OpsBossConsumer.as_asgi(clock=ManualClock(...))`` to move it by hand.
    clock: Clock | None = None

    boss_id: int | None = None
    subscriber: Subscriber | None = None
    feed_key: tuple | None = None
    _series_task: asyncio.Task | None = None

    def __init__(self, *args: object, clock: Clock | None = None, **kwargs: object) -> None:
        # Channels' consumers drop unknown init kwargs silently; take ``clock`` here.
        super().__init__(*args, **kwargs)
        if clock is not None:
            self.clock = clock

    async def connect(self) -> None:
        await self.accept()
        if not await _staff_or_refuse(self):
            return
        self.slug = self.scope["url_route"]["kwargs"].get("slug", "")
        try:
            self.boss_id = await database_sync_to_async(_boss_id_sync)(self.slug)
        except UnknownBoss as err:
            await self._refuse(err, CloseCode.UNKNOWN_BOSS)
            return
        self._window, self._bad = FrameWindow(), 0
        await self.send(
            text_data=encode(messages.ops_hello_frame(boss=self.slug, refresh_ms=OPS_REFRESH_INTERVAL_MS))
        )
        base_send = self.base_send

        async def send(text: str) -> None:
            await base_send({"type": "websocket.send", "text": text})

        self.subscriber = Subscriber(send)
        # Subscribe before reading the snapshot: nothing published in between is lost,
        # and the subscriber's version filter drops whichever copy is older.
        await get_hub().subscribe(self.boss_id, self.subscriber)
        try:
            await self._send_ops(with_series=True)
        except REDIS_DOWN as exc:  # say so; the feed keeps trying
            await self.send(text_data=error_frame(AuthorityUnavailable(f"Redis is unreachable: {exc}")))
        slug, clock = self.slug, self.clock
        # One feed per boss (and clock, for tests) per process; per socket when not shared.
        self.feed_key = ("boss", slug, id(clock), None if _feed_shared() else id(self))

        async def produce() -> dict:
            return await database_sync_to_async(_ops_snapshot_sync)(slug, False, clock)

        feed_join(
            self.feed_key, self, produce=produce, interval_ms=lambda: OPS_REFRESH_INTERVAL_MS, label="boss"
        )

    async def _refuse(self, err: LiveOpsError, code: int) -> None:
        await self.send(text_data=error_frame(err))
        await self.close(code=code)

    _needs_series = True  # the HP series goes in the first ops message that gets through

    async def _send_ops(self, *, with_series: bool = False) -> None:
        message = await database_sync_to_async(_ops_snapshot_sync)(self.slug, with_series, self.clock)
        if self.subscriber is None or self.subscriber.closed:
            return
        if with_series:
            self._needs_series = False
        # The embedded state goes through the same version filter as pushed states, so the
        # dashboard never sees the HP go back; the ops body itself is always sent.
        state = message["state"]
        self.subscriber.offer(encode(state), version=int(state["version"]), is_state=True)
        await self.send(text_data=encode(message))

    def on_feed(self, message: dict, text: str, state_text: str | None) -> None:
        """A refresh of the shared feed: the state through the version filter, then the body."""
        sub = self.subscriber
        if sub is None or sub.closed:
            return
        if self._needs_series:  # Redis was down at connect: this socket's first ops has the series
            if self._series_task is None or self._series_task.done():
                self._series_task = asyncio.get_running_loop().create_task(self._send_series())
            return
        if state_text is not None:
            sub.offer(state_text, version=int(message["state"]["version"]), is_state=True)
        sub.offer(text, version=0, is_state=False)

    async def _send_series(self) -> None:
        try:
            await self._send_ops(with_series=True)
        except Exception:  # still down: the next refresh tries again
            logger.warning("ops snapshot of %s failed", self.slug, exc_info=True, extra={"boss": self.slug})

    def on_feed_error(self, exc: Exception) -> None:
        if isinstance(exc, UnknownBoss):
            asyncio.get_running_loop().create_task(
                self._refuse(UnknownBoss(f"boss {self.slug!r} was deleted"), CloseCode.UNKNOWN_BOSS)
            )

    async def disconnect(self, code: int) -> None:
        if self.feed_key is not None:
            feed_leave(self.feed_key, self)
        if self._series_task is not None:
            self._series_task.cancel()
        if self.boss_id is not None and self.subscriber is not None:
            await get_hub().unsubscribe(self.boss_id, self.subscriber)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.subscriber is None:
            return
        frame = await _ops_frame(self, text_data, bytes_data, accepts=("ping", "refresh"))
        if frame is None:
            return
        if frame["type"] == "refresh":
            try:
                await self._send_ops()
            except REDIS_DOWN as exc:
                await self.send(text_data=error_frame(AuthorityUnavailable(f"Redis is unreachable: {exc}")))
        else:
            # the authority's clock, so that the page can measure how late states reach it
            server_ms = await _server_ms()
            await self.send(
                text_data=encode(messages.pong_frame(version=self.subscriber.version, server_ms=server_ms))
            )


async def _server_ms() -> int | None:
    """Redis ``TIME`` in ms (the clock that stamps every tick's ``ts``), None when unreachable."""
    try:
        seconds, micros = await get_async_redis().time()
    except Exception:
        return None
    return int(seconds) * 1000 + int(micros) // 1000


async def _ops_frame(consumer, text_data: str | None, bytes_data: bytes | None, *, accepts: tuple[str, ...]):
    """The client frame of an operator socket, or None when it was refused: past the frame rate
    the socket closes; a bad frame gets an error frame and counts, and enough of them close it."""
    if consumer._window.add() > OPS_FRAMES_PER_S:
        await consumer._refuse(
            RateLimited(f"more than {OPS_FRAMES_PER_S} frames per second"), CloseCode.RATE_LIMITED
        )
        return None
    try:
        frame = parse_frame(text_data, bytes_data)
        if frame["type"] not in accepts:
            takes = " and ".join(f"'{t}'" for t in accepts)
            raise UnknownType(
                f"unknown frame type {frame['type'][:40]!r}; this endpoint takes {takes}", field="type"
            )
    except LiveOpsError as err:
        consumer._bad += 1
        await consumer.send(text_data=error_frame(err))
        if consumer._bad >= OPS_MAX_BAD_FRAMES or err.code == "too_large":
            await consumer.close(
                code=CloseCode.TOO_LARGE if err.code == ErrorCode.TOO_LARGE else CloseCode.MALFORMED
            )
        return None
    return frame


def _overview_sync(tracker: OverviewTracker, clock: Clock | None) -> dict:
    return ops_overview_live(tracker=tracker, clock=clock)


class OpsOverviewConsumer(GuardedSocketMixin, SocketGaugeMixin, AsyncWebsocketConsumer):
    """``/ws/ops/``: every boss at a glance for the ``/ops/`` page (staff only).

    ``hello``, then an ``overview`` message at once and every ``OVERVIEW_REFRESH_INTERVAL_MS``
    from the process's one overview feed: ``{"type": "overview", "server_ms", "beat_age_ms",
    "bosses": [{"slug", "name", "status", "hp", "max_hp", "version", "phase", "dps",
    "buffered", "tick_lag_ms", "shards": {"ok", "late", "crashed"}}, ...]}``. Client frames:
    ``ping`` only.
    """

    metrics_endpoint = "ops_overview"
    channel_layer_alias = "__no_channel_layer__"
    clock: Clock | None = None
    subscriber: Subscriber | None = None
    feed_key: tuple | None = None

    def __init__(self, *args: object, clock: Clock | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if clock is not None:
            self.clock = clock

    async def _refuse(self, err: LiveOpsError, code: int) -> None:
        await self.send(text_data=error_frame(err))
        await self.close(code=code)

    async def connect(self) -> None:
        await self.accept()
        if not await _staff_or_refuse(self):
            return
        self._window, self._bad = FrameWindow(), 0
        await self.send(text_data=encode(messages.ops_hello_frame(refresh_ms=OVERVIEW_REFRESH_INTERVAL_MS)))
        base_send = self.base_send

        async def send(text: str) -> None:
            await base_send({"type": "websocket.send", "text": text})

        self.subscriber = Subscriber(send)
        tracker, clock = OverviewTracker(), self.clock
        self.feed_key = ("overview", id(clock))

        async def produce() -> dict:
            return await database_sync_to_async(_overview_sync)(tracker, clock)

        feed_join(
            self.feed_key,
            self,
            produce=produce,
            interval_ms=lambda: OVERVIEW_REFRESH_INTERVAL_MS,
            label="overview",
        )
        try:  # the first message at once (the page has the server-rendered rows until then)
            first = await database_sync_to_async(_overview_sync)(OverviewTracker(), clock)
        except REDIS_DOWN as exc:
            await self.send(text_data=error_frame(AuthorityUnavailable(f"Redis is unreachable: {exc}")))
            return
        self.subscriber.offer(encode(first), version=0, is_state=False)

    def on_feed(self, message: dict, text: str, state_text: str | None) -> None:
        if self.subscriber is not None:
            self.subscriber.offer(text, version=0, is_state=False)

    def on_feed_error(self, exc: Exception) -> None:
        return None  # logged by the feed; the next refresh tries again

    async def disconnect(self, code: int) -> None:
        if self.feed_key is not None:
            feed_leave(self.feed_key, self)
        if self.subscriber is not None:
            self.subscriber.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.subscriber is None:
            return
        if await _ops_frame(self, text_data, bytes_data, accepts=("ping",)) is not None:
            await self.send(text_data=encode(messages.pong_frame()))
