"""The per-process fan-out hub: one Redis (S)SUBSCRIBE per process per boss, latest-wins sockets.

The sync tick publishes each boss's messages once, already serialized, on
``keys.state_channel(boss_id)`` (bosses/broadcast.py). Every ASGI process runs one hub per
event loop; the hub holds ONE Redis connection in subscriber mode and subscribes to a
boss's channel while at least one local socket watches that boss. Each published text is
decoded once, its version read once, and the very same ``str`` is handed to every local
socket. Nothing goes through channel-layer groups (see docs/fanout.md for why and for the
measurements).

API (all calls from the event loop that serves the sockets)::

    from transport.fastpath import writer_for
    from transport.hub import Subscriber, get_hub

    sub = Subscriber(send, writer_for(asgi_send))
                                           # send: async (text: str) -> None, e.g. a socket's
                                           # websocket.send; called with wire text as is.
                                           # writer_for(): the uvicorn fast path
                                           # (transport/fastpath.py; None elsewhere), fed the
                                           # frame built once per message per process
    await get_hub().subscribe(boss_id, sub)  # returns once Redis confirmed the subscription,
                                           # so a snapshot read after it misses nothing
    sub.offer(snapshot_text, version=v, is_state=True)  # your own snapshot, same filter
    ...
    await get_hub().unsubscribe(boss_id, sub)  # on disconnect (idempotent)

Delivery rules of a :class:`Subscriber`:

* a ``state`` message whose version is not newer than the last state offered to this
  subscriber is dropped, so a socket never sees an older version after a newer one (the
  snapshot, a resync after a Redis reconnect and late publishers all go through this);
* latest wins: while a send is blocked (the socket's transport is paused by flow control),
  a newer state replaces the pending one instead of queueing behind it. Events (``phase``,
  ``defeated``, ``expired``, anything not ``state``) are kept in order, at most
  ``MAX_PENDING_EVENTS`` of them;
* sends are started eagerly: a send that completes without suspending (the normal case)
  costs no task and no extra loop iteration; with a fast-path writer (transport/fastpath.py:
  uvicorn websockets-sansio, no deflate) an open, writable socket gets the pre-built frame
  with one transport.write.

Where a channel is subscribed follows the authority's topology (core.redis.pubsub_endpoints;
docs/topologies.md): the one Redis, the master the sentinels name, or on a Redis Cluster the
master that owns the boss's slot (SSUBSCRIBE on the boss's sharded channel, one connection
per master in use). If a subscriber connection drops, a subscription is refused (MOVED) or
the server drops it unasked (SUNSUBSCRIBE when a slot moves or a master steps down), the hub
re-reads the topology with backoff, re-subscribes where the channel now belongs and, once
each channel is confirmed again, reads the boss's state and offers it to every subscriber
(absolute state + version: anything missed in between is covered). With Sentinel or a
cluster it also re-reads the topology every ``TOPOLOGY_CHECK_S`` when nothing broke.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis

from core import keys, metrics
from core.authority import aread_state
from core.redis import (
    CONNECT_TIMEOUT_S,
    Endpoint,
    get_async_redis,
    pubsub_endpoints,
    sharded_pubsub,
    topology_kind,
    url_endpoint,
)
from core.wire import encode
from transport.fastpath import Writer, text_frame

logger = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 64
FIRST_VERSION = 1  # the version boss_go_live publishes (core/lua/seed.lua)
SUBSCRIBE_TIMEOUT_S = 5.0
RECONNECT_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# Sentinel and cluster: how often the hub re-reads where its channels belong when nothing
# told it (a failover also cuts the connection, which is noticed at once).
TOPOLOGY_CHECK_S = 1.0
READ_CHUNK_BYTES = 256 * 1024

# The ASGI server flags the fan-out design relies on (docs/fanout.md): the sans-I/O
# websockets implementation (its send completes without suspending unless the transport
# is paused, and it is the one transport/fastpath.py writes frames through), no per-message
# deflate (the dominant CPU cost per message; a frame built once cannot be compressed per
# connection), a 64 KiB frame limit (a 1 MiB frame is refused with close code 1009 before
# any consumer sees it), httptools with a deadline and a cap on unfinished request heads
# (transport/handshake.py: half-open handshakes).
UVICORN_WS_ARGS = [
    "--ws",
    "websockets-sansio",
    "--ws-per-message-deflate",
    "false",
    "--ws-max-size",
    "65536",
    "--http",
    "transport.handshake:GuardedHttpToolsProtocol",  # httptools with a handshake deadline and cap
    "--loop",
    "uvloop",
    "--no-access-log",
]

Send = Callable[[str], Awaitable[None]]


def message_version(text: str) -> tuple[int, bool, int]:
    """``(version, is_state, gen)`` of a published message (0 when it carries no version).

    ``gen`` counts the restores of the fight's authority from the SQL archive: a restored
    authority may re-issue versions it had issued before it was lost (docs/durability.md).
    """
    try:
        msg = json.loads(text)
    except ValueError:
        return 0, False, 0
    if not isinstance(msg, dict):
        return 0, False, 0
    version, gen = msg.get("version"), msg.get("gen")
    return (
        (version if isinstance(version, int) else 0),
        msg.get("type") == "state",
        (gen if isinstance(gen, int) else 0),
    )


class Subscriber:
    """One socket's (or callback's) view of a boss channel: version filter + latest-wins slot."""

    __slots__ = ("__weakref__", "_busy", "_pending", "_raw", "_send", "_version", "closed", "sent", "skipped")

    def __init__(self, send: Send, raw: Writer | None = None) -> None:
        self._send = send
        self._raw = raw
        self._busy = False
        self._pending: collections.deque[tuple[bool, str]] = collections.deque()
        self._version = -1
        self.closed = False
        self.sent = 0
        self.skipped = 0  # states replaced before they could be sent (slow socket)

    @property
    def version(self) -> int:
        """The newest state version offered to this subscriber (-1 before the first)."""
        return self._version

    def offer(self, text: str, *, version: int, is_state: bool, frame: bytes | None = None) -> None:
        """Queue ``text`` for sending (O(1), never blocks; see the module docstring).

        ``frame`` is ``text_frame(text)`` when the caller already built it (the hub does,
        once per message per process).
        """
        if self.closed:
            return
        if is_state:
            if version <= self._version:
                return
            self._version = version
        if not self._busy:
            if self._raw is not None and self._raw(frame or text_frame(text)):
                self.sent += 1
                return
            self._start(text)
            return
        if is_state:
            for i, (pending_is_state, _) in enumerate(self._pending):
                if pending_is_state:
                    del self._pending[i]
                    self.skipped += 1
                    break
        elif sum(1 for s, _ in self._pending if not s) >= MAX_PENDING_EVENTS:
            return  # a stuck socket: keep the newest state, shed the oldest events
        self._pending.append((is_state, text))

    def new_fight(self) -> None:
        """Forget the version watermark: the boss was reset and versions restart at 1."""
        self._version = -1

    def close(self) -> None:
        """Stop sending (the socket is gone)."""
        self.closed = True
        self._pending.clear()

    def _start(self, text: str) -> None:
        # Drive the send coroutine by hand: if it finishes without suspending (transport
        # writable), no task is created at all. Otherwise continue it in a task, exactly as
        # a Task would (this is Python 3.12's eager task start, done by hand for 3.11).
        coro = self._send(text)
        try:
            yielded = coro.send(None)
        except StopIteration:
            self.sent += 1
            return
        except Exception:  # the socket is gone; the consumer's disconnect unsubscribes
            self.close()
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._finish(coro, yielded))

    async def _finish(self, coro: Any, yielded: Any) -> None:
        try:
            while True:
                try:
                    if yielded is None:
                        await asyncio.sleep(0)
                    else:
                        await yielded
                except asyncio.CancelledError:
                    coro.close()
                    raise
                except Exception:
                    pass  # the coroutine sees the future's exception when resumed
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    break
            self.sent += 1
            while self._pending and not self.closed:
                _, text = self._pending.popleft()
                await self._send(text)
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            self.close()
        finally:
            self._busy = False


class _Link:
    """One subscriber-mode connection to one server (a cluster has one per master in use)."""

    __slots__ = ("endpoint", "pending", "task", "writer")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.pending: set[int] = set()  # bosses whose (S)SUBSCRIBE is not confirmed yet

    def write(self, parts: list[str]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(_resp(parts))


class FanoutHub:
    """Subscriber-mode Redis connections (one per server holding watched channels: one on a
    single Redis or a Sentinel master, one per master on a cluster) for one event loop;
    fans messages out to Subscribers."""

    def __init__(self, redis_url: str | None = None) -> None:
        # A URL given here pins the hub to that one server (tests, the bench); otherwise it
        # follows the authority's topology (core.redis.pubsub_endpoints).
        self._url = redis_url
        self._subs: dict[int, set[Subscriber]] = {}
        self._confirmed: dict[int, asyncio.Future] = {}
        self._ever_confirmed: set[int] = set()
        self._latest: dict[int, int] = {}
        self._gens: dict[int, int] = {}  # restores of each boss's authority seen (message_version)
        self._snapshots: dict[int, asyncio.Future] = {}
        self._links: dict[Endpoint, _Link] = {}
        self._placed: dict[int, Endpoint] = {}  # where each boss's (S)SUBSCRIBE was sent
        self._sharded: bool | None = None
        self._topology_moves = False  # Sentinel or cluster: re-read the topology now and then
        self._wake = asyncio.Event()
        self._refresh = False  # re-read the topology (a failover, a moved slot) before placing
        self._failures = 0
        self._task: asyncio.Task | None = None
        self._closing = False
        self.messages = 0  # messages received from Redis
        self.deliveries = 0  # offers made to subscribers
        self.reconnects = 0

    # --- public API -------------------------------------------------------------------

    async def subscribe(self, boss_id: int, subscriber: Subscriber) -> None:
        """Add ``subscriber`` to ``boss_id``'s channel; returns once Redis confirmed it."""
        subs = self._subs.get(boss_id)
        if subs is None:
            subs = self._subs[boss_id] = set()
            self._confirmed[boss_id] = asyncio.get_running_loop().create_future()
            self._wake.set()
        subs.add(subscriber)
        self._ensure_running()
        fut = self._confirmed.get(boss_id)
        if fut is not None and not fut.done():
            try:
                await asyncio.wait_for(asyncio.shield(fut), SUBSCRIBE_TIMEOUT_S)
            except TimeoutError:
                # Redis is away: the socket still gets its snapshot when Redis is back
                # (the hub resyncs every channel after reconnecting).
                logger.warning(
                    "fan-out: subscription to boss %s not confirmed yet", boss_id, extra={"boss": boss_id}
                )

    async def unsubscribe(self, boss_id: int, subscriber: Subscriber) -> None:
        """Remove ``subscriber``; the last one out unsubscribes the channel (idempotent)."""
        subscriber.close()
        subs = self._subs.get(boss_id)
        if not subs:
            return
        subs.discard(subscriber)
        if not subs:
            del self._subs[boss_id]
            self._confirmed.pop(boss_id, None)
            self._ever_confirmed.discard(boss_id)
            self._latest.pop(boss_id, None)
            self._gens.pop(boss_id, None)
            endpoint = self._placed.pop(boss_id, None)
            link = self._links.get(endpoint) if endpoint is not None else None
            if link is not None and self._sharded is not None:
                link.pending.discard(boss_id)
                link.write([self._command(unsubscribe=True), self._channel(boss_id)])

    async def snapshot(self, boss_id: int) -> Any:
        """The boss's ``BossState`` (or None) read from Redis AFTER the caller subscribed.

        Reads are coalesced: every caller that asks before the pending read is issued shares
        it (a connect burst of thousands of viewers is a handful of HMGETs on a handful of
        Redis connections, not one each). A read is issued only after every caller sharing it
        had subscribed, so no publish can fall between a snapshot and the live stream.
        """
        fut = self._snapshots.get(boss_id)
        if fut is None:
            fut = self._snapshots[boss_id] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._read_snapshot(boss_id, fut))
        return await asyncio.shield(fut)

    async def _read_snapshot(self, boss_id: int, fut: asyncio.Future) -> None:

        # From here on, callers start a new read: this one may already be on the wire.
        if self._snapshots.get(boss_id) is fut:
            del self._snapshots[boss_id]
        try:
            fut.set_result(await aread_state(get_async_redis(), boss_id))
        except BaseException as exc:  # every waiter gets it (Redis unreachable, ...)
            fut.set_exception(exc)
            fut.exception()  # retrieved here; waiters re-raise it

    def dispatch(self, boss_id: int, text: str) -> None:
        """Fan ``text`` out to ``boss_id``'s local subscribers (also used for resyncs)."""
        version, is_state, gen = message_version(text)
        new_fight = False
        if is_state:
            latest = self._latest.get(boss_id, -1)
            if gen > self._gens.get(boss_id, 0):
                # The authority was restored from the archive: its versions count from the
                # archive's, possibly below what was shown. It is the truth from now on.
                self._gens[boss_id] = gen
                new_fight = True
            elif version <= latest:
                # Versions restart at 1 when a boss is reset and goes live again (a new
                # fight): only boss_go_live publishes version 1, so take it as a reset.
                if not (version == FIRST_VERSION and latest > FIRST_VERSION):
                    metrics.HUB_STATES_STALE.inc()
                    return
                new_fight = True
                self._gens[boss_id] = gen
            self._latest[boss_id] = version
        subs = self._subs.get(boss_id)
        if not subs:
            return
        frame = text_frame(text)  # framed once, written as is to every raw-capable socket
        for sub in tuple(subs):
            if new_fight:
                sub.new_fight()
            sub.offer(text, version=version, is_state=is_state, frame=frame)
        self.deliveries += len(subs)
        if is_state:
            metrics.observe_hub_state(text, len(subs))

    def subscriber_count(self, boss_id: int | None = None) -> int:
        """Local subscribers of one boss, or of all bosses."""
        if boss_id is not None:
            return len(self._subs.get(boss_id, ()))
        return sum(len(s) for s in self._subs.values())

    async def close(self) -> None:
        """Stop the supervisor and the readers and drop the Redis connections (tests, shutdown)."""
        self._closing = True
        tasks = [t for t in (self._task, *(link.task for link in self._links.values())) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for link in list(self._links.values()):
            if link.writer is not None:
                try:
                    link.writer.close()
                except Exception:
                    pass
        self._links.clear()
        self._placed.clear()

    # --- the Redis side -----------------------------------------------------------------
    #
    # One supervisor task places every watched boss's channel on the server that serves it
    # (core.redis.pubsub_endpoints) and opens a reader per server. Whatever goes wrong on a
    # server (connection lost, an error reply such as MOVED, an unrequested SUNSUBSCRIBE
    # when a slot moves or a master steps down) unplaces that server's channels and wakes
    # the supervisor, which re-reads the topology and subscribes them again where they now
    # belong; each confirmation after the first triggers a snapshot read (_resync), so no
    # socket stays on a state older than the newest one.

    def _channel(self, boss_id: int) -> str:
        return keys.sharded_state_channel(boss_id) if self._sharded else keys.state_channel(boss_id)

    def _command(self, *, unsubscribe: bool = False) -> str:
        if self._sharded:
            return "SUNSUBSCRIBE" if unsubscribe else "SSUBSCRIBE"
        return "UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE"

    def _boss_of(self, channel: bytes) -> int | None:
        if self._sharded:
            return keys.sharded_state_channel_boss_id(channel)
        return keys.state_channel_boss_id(channel)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            periodic = False
            try:
                # Sentinel and cluster: look again now and then even when nothing broke (a
                # master demoted without dropping its clients, a slot moved quietly).
                await asyncio.wait_for(self._wake.wait(), TOPOLOGY_CHECK_S)
            except TimeoutError:
                periodic = self._url is None and self._sharded is not None and self._topology_moves
            self._wake.clear()
            if self._closing:
                break
            try:
                await self._place(everything=periodic)
                self._failures = 0
            except Exception as exc:
                delay = RECONNECT_BACKOFF_S[min(self._failures, len(RECONNECT_BACKOFF_S) - 1)]
                self._failures += 1
                logger.warning("fan-out: Redis unreachable (%s); retrying in %.2fs", exc, delay)
                self._refresh = True
                await asyncio.sleep(delay)
                self._wake.set()

    async def _place(self, *, everything: bool) -> None:
        if self._sharded is None:
            if self._url is None:
                self._sharded = await asyncio.to_thread(sharded_pubsub)
                self._topology_moves = await asyncio.to_thread(topology_kind) != "standalone"
            else:
                self._sharded, self._topology_moves = False, False
        bosses = [b for b in self._subs if everything or b not in self._placed]
        if not bosses:
            return
        refresh, self._refresh = self._refresh or everything, False
        if self._url is not None:
            endpoints = dict.fromkeys((self._channel(b) for b in bosses), url_endpoint(self._url))
        else:
            endpoints = await pubsub_endpoints([self._channel(b) for b in bosses], refresh=refresh)
        failed: Exception | None = None
        for boss_id in bosses:
            if boss_id not in self._subs:
                continue  # left while the topology was read
            endpoint = endpoints[self._channel(boss_id)]
            old = self._placed.get(boss_id)
            if old == endpoint:
                continue
            try:
                link = await self._link(endpoint)
            except (OSError, ConnectionError) as exc:
                failed = exc
                continue
            if old is not None and (old_link := self._links.get(old)) is not None:
                old_link.pending.discard(boss_id)
                old_link.write([self._command(unsubscribe=True), self._channel(boss_id)])
            self._placed[boss_id] = endpoint
            link.pending.add(boss_id)
            self._expect_confirmation(boss_id)
            link.write([self._command(), self._channel(boss_id)])
        if failed is not None:
            raise failed

    def _expect_confirmation(self, boss_id: int) -> None:
        fut = self._confirmed.get(boss_id)
        if fut is None or fut.done():
            self._confirmed[boss_id] = asyncio.get_running_loop().create_future()

    async def _link(self, endpoint: Endpoint) -> _Link:
        link = self._links.get(endpoint)
        if link is not None and link.writer is not None and not link.writer.is_closing():
            return link
        reader, writer = await self._connect(endpoint)
        link = _Link(endpoint)
        link.writer = writer
        self._links[endpoint] = link
        link.task = asyncio.get_running_loop().create_task(self._read_link(link, reader))
        return link

    async def _connect(self, endpoint: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if endpoint.path:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(endpoint.path), CONNECT_TIMEOUT_S
            )
        else:
            tls = ssl.create_default_context() if endpoint.tls else None
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(endpoint.host, endpoint.port, ssl=tls), CONNECT_TIMEOUT_S
            )
        if endpoint.password:
            auth = (
                ["AUTH", endpoint.username, endpoint.password]
                if endpoint.username
                else ["AUTH", endpoint.password]
            )
            writer.write(_resp(auth))
            rd = hiredis.Reader()
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    raise ConnectionError("Redis closed the connection during AUTH")
                rd.feed(chunk)
                reply = rd.gets()
                if reply is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        writer.close()
                        raise ConnectionError(f"Redis AUTH failed: {reply}")
                    break
        return reader, writer

    async def _read_link(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            await self._read(link, reader)
        except (OSError, ConnectionError) as exc:
            if not self._closing:
                logger.warning("fan-out: Redis %s lost (%s); resubscribing", link.endpoint.name, exc)
        except asyncio.CancelledError:
            raise
        finally:
            if link.writer is not None:
                try:
                    link.writer.close()
                except Exception:
                    pass
            link.writer = None
            if self._links.get(link.endpoint) is link:
                del self._links[link.endpoint]
        if self._closing:
            return
        self.reconnects += 1
        self._unplace(link, [b for b, e in self._placed.items() if e == link.endpoint])
        await asyncio.sleep(RECONNECT_BACKOFF_S[0])
        self._wake.set()

    def _unplace(self, link: _Link, bosses: list[int]) -> None:
        """Forget where ``bosses`` were subscribed: the supervisor places them again."""
        for boss_id in bosses:
            if self._placed.get(boss_id) == link.endpoint:
                del self._placed[boss_id]
            link.pending.discard(boss_id)
            if boss_id in self._subs:
                self._expect_confirmation(boss_id)
        self._refresh = True
        self._wake.set()

    async def _read(self, link: _Link, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        while True:
            chunk = await reader.read(READ_CHUNK_BYTES)
            if not chunk:
                raise ConnectionError("Redis closed the subscriber connection")
            parser.feed(chunk)
            while True:
                reply = parser.gets()
                if reply is False:
                    break
                if isinstance(reply, hiredis.ReplyError):
                    # An (S)SUBSCRIBE refused (MOVED after a slot moved, LOADING after a
                    # restart, ...): replies carry no channel, so every channel of this
                    # link still waiting for its confirmation is placed again.
                    logger.warning("fan-out: Redis %s refused a subscription: %s", link.endpoint.name, reply)
                    self._unplace(link, list(link.pending))
                    continue
                if not isinstance(reply, list) or len(reply) < 3:
                    continue
                kind, channel = reply[0], reply[1]
                boss_id = self._boss_of(channel)
                if boss_id is None:
                    continue
                if kind in (b"message", b"smessage"):
                    self.messages += 1
                    self.dispatch(boss_id, reply[2].decode())
                elif kind in (b"subscribe", b"ssubscribe"):
                    if self._placed.get(boss_id) == link.endpoint:
                        link.pending.discard(boss_id)
                        self._on_confirmed(boss_id)
                elif kind == b"sunsubscribe" and self._placed.get(boss_id) == link.endpoint:
                    # Not asked for (we unplace before we unsubscribe): the server dropped
                    # the channel because its slot moved or this master became a replica.
                    self._unplace(link, [boss_id])

    def _on_confirmed(self, boss_id: int) -> None:
        fut = self._confirmed.get(boss_id)
        if fut is not None and not fut.done():
            fut.set_result(True)
        if boss_id in self._ever_confirmed:
            asyncio.get_running_loop().create_task(self._resync(boss_id))
        elif boss_id in self._subs:
            self._ever_confirmed.add(boss_id)

    async def _resync(self, boss_id: int) -> None:
        """After a reconnect: offer the current state (messages may have been missed)."""

        try:
            state = await aread_state(get_async_redis(), boss_id)
        except Exception as exc:  # the next tick's message covers it
            logger.warning("fan-out: resync of boss %s failed: %s", boss_id, exc)
            return
        if state is not None:
            self.dispatch(boss_id, encode(state.as_message()))


def _resp(parts: Any) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FanoutHub] = weakref.WeakKeyDictionary()


def get_hub() -> FanoutHub:
    """The hub of the running event loop (one per ASGI process in production)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = FanoutHub()
    return hub
