"""Clocks that code asks for "now", so tests can move time instead of sleeping through it.

Heartbeat ages, crash detection and the dashboards' lags compare times written by Redis
``TIME``, so production reads the authority's clock (:class:`RedisClock`): every host
agrees on it. Tests pass a :class:`ManualClock` and :meth:`ManualClock.advance` it.
"""

from __future__ import annotations

from typing import Protocol

from redis.cluster import RedisCluster

from core.clients import SyncClient


class Clock(Protocol):
    """Anything that tells the current time in whole milliseconds since the epoch."""

    def now_ms(self) -> int:
        """The current time, ms."""
        ...


class RedisClock:
    """The authority's clock: Redis ``TIME`` (the clock the Lua scripts stamp with)."""

    __slots__ = ("client", "key")

    def __init__(self, client: SyncClient, *, key: str | None = None) -> None:
        self.client = client
        # On a Redis Cluster, TIME goes to the master of this key's slot (the clock that
        # stamped the key's timestamps) instead of any node.
        self.key = key

    def now_ms(self) -> int:
        """Redis ``TIME`` in ms (one round trip)."""
        if isinstance(self.client, RedisCluster) and self.key is not None:
            node = self.client.get_node_from_key(self.key)  # type: ignore[no-untyped-call]
            seconds, micros = self.client.time(target_nodes=node)
        else:
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000


class ManualClock:
    """A clock that moves only when told to (tests)."""

    __slots__ = ("_now_ms",)

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        """The time this clock was set or advanced to."""
        return self._now_ms

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` (never back); returns the new time."""
        if ms < 0:
            raise ValueError("a clock never goes back")
        self._now_ms += ms
        return self._now_ms
