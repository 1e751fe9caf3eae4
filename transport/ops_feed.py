"""Shared operator feeds: one poll loop per feed per event loop, whatever the number of sockets.

The operator pages show figures that change without any publish (heartbeat ages, shard
health, DPS, tick lag), so they are polled. Polling per socket made the ASGI process's cost
grow with the number of operators (one snapshot per socket per refresh). Here every socket
of the same feed (one boss's dashboard, or the ``/ops/`` overview) joins one
:class:`SharedFeed`: a single task reads the snapshot once per refresh, encodes it once and
hands the same text to every member, like the fan-out hub does for published states
(transport/hub.py). The loop starts with the first member and stops with the last.

API (from the event loop serving the sockets)::

    feed = feed_join(key, member, produce=..., interval_ms=lambda: 500)
    ...
    feed_leave(key, member)

``produce`` is an async function returning the message (a dict with an optional ``state``
inside, encoded once as well); each member gets ``on_feed(message, text, state_text)`` or,
when ``produce`` raised something other than a Redis blip, ``on_feed_error(exc)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

from core import metrics
from core.errors import LiveOpsError
from core.redis import REDIS_DOWN
from core.wire import encode

logger = logging.getLogger(__name__)


class FeedMember(Protocol):
    def on_feed(self, message: dict, text: str, state_text: str | None) -> None: ...

    def on_feed_error(self, exc: Exception) -> None: ...


Produce = Callable[[], Awaitable[dict[str, Any]]]


class SharedFeed:
    """One poll loop feeding every member the same encoded message (see the module docstring)."""

    def __init__(
        self, key: Hashable, *, produce: Produce, interval_ms: Callable[[], int], label: str
    ) -> None:
        self.key = key
        self._produce = produce
        self._interval_ms = interval_ms
        self._label = label
        self.members: set[FeedMember] = set()
        self.polls = 0
        self._task: asyncio.Task | None = None

    def add(self, member: FeedMember) -> None:
        self.members.add(member)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, member: FeedMember) -> bool:
        """Drop ``member``; True when the feed has no member left (its loop is stopped)."""
        self.members.discard(member)
        if not self.members and self._task is not None:
            self._task.cancel()
            self._task = None
        return not self.members

    async def _run(self) -> None:
        next_at = time.monotonic()
        while self.members:
            next_at = max(next_at + self._interval_ms() / 1000, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
            if not self.members:
                return
            try:
                message = await self._produce()
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:  # a blip: the next refresh tries again
                logger.warning(
                    "ops feed %s: Redis unreachable: %s", self.key, exc, extra={"component": "ops"}
                )
                continue
            except Exception as exc:  # e.g. the boss was deleted: each member decides
                if not isinstance(exc, LiveOpsError):
                    logger.warning("ops feed %s failed", self.key, exc_info=True, extra={"component": "ops"})
                for member in tuple(self.members):
                    member.on_feed_error(exc)
                continue
            self.polls += 1
            metrics.OPS_FEED_POLLS.labels(feed=self._label).inc()
            text = encode(message)
            state = message.get("state")
            state_text = encode(state) if isinstance(state, dict) else None
            for member in tuple(self.members):
                member.on_feed(message, text, state_text)


_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, SharedFeed]] = (
    weakref.WeakKeyDictionary()
)


def _loop_feeds() -> dict[Hashable, SharedFeed]:
    loop = asyncio.get_running_loop()
    feeds = _feeds.get(loop)
    if feeds is None:
        feeds = _feeds[loop] = {}
    return feeds


def feed_join(
    key: Hashable, member: FeedMember, *, produce: Produce, interval_ms: Callable[[], int], label: str
) -> SharedFeed:
    """Join the feed ``key`` of the running loop (created, with ``produce``, by its first member)."""
    feeds = _loop_feeds()
    feed = feeds.get(key)
    if feed is None:
        feed = feeds[key] = SharedFeed(key, produce=produce, interval_ms=interval_ms, label=label)
    feed.add(member)
    return feed


def feed_leave(key: Hashable, member: FeedMember) -> None:
    """Leave the feed ``key`` (idempotent); the last member out stops its loop."""
    feeds = _loop_feeds()
    feed = feeds.get(key)
    if feed is not None and feed.remove(member):
        del feeds[key]


def feeds_running() -> dict[Hashable, int]:
    """``{key: members}`` of the running loop's feeds (tests, introspection)."""
    return {key: len(feed.members) for key, feed in _loop_feeds().items()}
