"""The kit's fault-injecting WebSocket proxy: between a driver's SDK and the platform.

Every SDK under test connects to the proxy, which opens the same path on the real server
(forwarding the ``Authorization`` header) and relays frames both ways. A scenario sets
:class:`Faults` from the runner's thread; the proxy's event loop runs in a thread of its own.

Faults it can inject:

* drop the next N server frames of a type (``ack``: lost acknowledgements), or delay them;
  drop the next N client frames of a type;
* send the next N client frames of a type twice (``damage``: a duplicate on the wire);
* answer the next N client frames of a type itself with an error frame the platform builds
  (``core.wire.error_frame``: ``authority_unavailable``), not forwarding them;
* refuse the next N connections the way the platform's socket cap does (``rate_limited``,
  close 4429);
* a partition: nothing passes either way while it lasts, the sockets stay open;
* hold back the next N client frames of a type (``heartbeat``) and send them later, on the
  same connection, when the scenario says (a frame delayed past the ones sent after it);
* cut every connection now (the TCP connection dies, no close frame);
* hold every connection (nothing is read either way, not even a ping: a silent link).

It also records what passed: every client ``damage`` seq and every server frame's type.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.errors import AuthorityUnavailable, RateLimited
from core.wire import error_frame
from worldboss_sdk.protocol import CloseCode


@dataclass
class Faults:
    """What the proxy does to the traffic now (set by a scenario; read under ``lock``)."""

    drop_server: Counter[str] = field(default_factory=Counter)  # frame type -> how many more to drop
    delay_server_s: dict[str, float] = field(default_factory=dict)  # frame type -> delay
    duplicate_client: Counter[str] = field(default_factory=Counter)
    unavailable_client: Counter[str] = field(default_factory=Counter)  # answered authority_unavailable
    refuse_connections: int = 0  # answered rate_limited + close 4429
    partitioned: bool = False
    hold_client: Counter[str] = field(default_factory=Counter)  # frame type -> how many more to hold back
    drop_client: Counter[str] = field(default_factory=Counter)  # frame type -> how many more to drop


@dataclass
class Seen:
    """What passed the proxy (for a scenario's checks)."""

    server_types: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)  # error frames the SDK received
    damage_seqs: list[tuple[int, str, int]] = field(default_factory=list)  # (epoch, boss, seq) sent
    connections: int = 0
    refused: int = 0
    answered_unavailable: int = 0
    duplicated: int = 0
    dropped: int = 0
    held: list[dict[str, Any]] = field(default_factory=list)  # the client frames held back
    released: int = 0
    released_answered: int = 0  # releases the platform has answered (every frame released before)


RELEASE_MARK = "conformance-release"  # a ping the proxy sends after released frames; its pong is kept


class FaultProxy:
    """``ws://127.0.0.1:<port>`` relaying to ``upstream`` (a ws:// URL) with :class:`Faults`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.faults = Faults()
        self.seen = Seen()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._pairs: set[tuple[ServerConnection, ClientConnection]] = set()
        self._held: list[tuple[ClientConnection, str | bytes]] = []  # (upstream, frame)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        self.cut()  # a held connection would keep the server's close waiting on it
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(self._server), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self, server: Server) -> None:
        server.close()
        await server.wait_closed()

    def reset(self) -> None:
        """No faults, nothing seen (the runner also cuts what is left between scenarios)."""
        with self.lock:
            self.faults = Faults()
            self.seen = Seen()
            self._held.clear()

    def set(self, **changes: Any) -> None:
        """Change faults: ``proxy.set(partitioned=True)``; Counter fields are added to."""
        with self.lock:
            for name, value in changes.items():
                current = getattr(self.faults, name)
                if isinstance(current, dict):  # Counter fields add, delays replace
                    current.update(value)
                else:
                    setattr(self.faults, name, value)

    def cut(self) -> int:
        """Abort every relayed connection (no close frame, as a lost network); how many."""
        return self._on_every_pair(lambda transport: transport.abort())

    def hold(self) -> int:
        """Stop reading every relayed connection, both ways (a link that went silent: no
        frame, no pong, no close; TCP stays up). New connections are relayed as usual."""
        return self._on_every_pair(lambda transport: transport.pause_reading())

    def _on_every_pair(self, act) -> int:
        """Apply ``act`` to both transports of every relayed connection, on the proxy's loop;
        how many connections."""
        done = threading.Event()
        count = [0]

        def run() -> None:
            for client_side, server_side in list(self._pairs):
                act(client_side.transport)
                act(server_side.transport)
                count[0] += 1
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)
        return count[0]

    def release(self) -> int:
        """Send the held-back client frames now, each on the connection it came from, then a
        ping of the proxy's own: ``seen.released_answered`` counts its pongs (the platform
        answers a connection's frames in order, so the released ones were handled); how many."""
        with self.lock:
            held, self._held = self._held, []

        async def send() -> int:
            for up, text in held:
                await up.send(text)
            for up in {up for up, _ in held}:
                await up.send(json.dumps({"type": "ping", "id": RELEASE_MARK}))
            return len(held)

        sent = asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)
        with self.lock:
            self.seen.released += sent
        return sent

    # --- the relay ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(self._serve())
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=2**22)

    async def _handle(self, down: ServerConnection) -> None:
        with self.lock:
            self.seen.connections += 1
            refuse = self.faults.refuse_connections > 0
            if refuse:
                self.faults.refuse_connections -= 1
                self.seen.refused += 1
        if refuse:  # what transport/socket_caps.py sends a socket over the cap
            await down.send(error_frame(RateLimited("too many sockets"), close=CloseCode.RATE_LIMITED))
            await down.close(CloseCode.RATE_LIMITED)
            return
        assert down.request is not None
        headers = {k: v for k, v in down.request.headers.items() if k.lower() == "authorization"}
        try:
            up = await connect(
                self.upstream + down.request.path,
                additional_headers=headers,
                compression=None,
                ping_interval=None,
                max_size=2**22,
            )
        except (OSError, InvalidStatus):
            await down.close(CloseCode.TRY_AGAIN)
            return
        pair = (down, up)
        self._pairs.add(pair)
        try:
            session: dict[str, int] = {"epoch": 0}  # the welcome's epoch, for Seen.damage_seqs
            await asyncio.gather(
                self._client_to_server(down, up, session), self._server_to_client(up, down, session)
            )
        finally:
            self._pairs.discard(pair)
            await up.close()

    async def _client_to_server(
        self, down: ServerConnection, up: ClientConnection, session: dict[str, int]
    ) -> None:
        try:
            async for text in down:
                msg = _parse(text)
                kind = str(msg.get("type", ""))
                with self.lock:
                    if self.faults.partitioned:
                        self.seen.dropped += 1
                        continue
                    if self.faults.drop_client[kind] > 0:
                        self.faults.drop_client[kind] -= 1
                        self.seen.dropped += 1
                        continue
                    if self.faults.hold_client[kind] > 0:
                        self.faults.hold_client[kind] -= 1
                        self.seen.held.append(msg)
                        self._held.append((up, text))
                        continue
                    if kind == "damage":
                        self.seen.damage_seqs.append(
                            (session["epoch"], str(msg.get("boss")), int(msg.get("seq", 0)))
                        )
                    answer = self.faults.unavailable_client[kind] > 0
                    if answer:
                        self.faults.unavailable_client[kind] -= 1
                        self.seen.answered_unavailable += 1
                    twice = not answer and self.faults.duplicate_client[kind] > 0
                    if twice:
                        self.faults.duplicate_client[kind] -= 1
                        self.seen.duplicated += 1
                if answer:  # what the consumer answers while Redis does not
                    err = AuthorityUnavailable("the authority did not answer")
                    await down.send(error_frame(err, ref=kind, boss=msg.get("boss"), seq=msg.get("seq")))
                    continue
                await up.send(text)
                if twice:
                    await up.send(text)
        except ConnectionClosed:
            pass
        finally:
            await _close_quietly(up, down)

    async def _server_to_client(
        self, up: ClientConnection, down: ServerConnection, session: dict[str, int]
    ) -> None:
        try:
            async for text in up:
                msg = _parse(text)
                kind = str(msg.get("type", ""))
                with self.lock:
                    if self.faults.partitioned:
                        self.seen.dropped += 1
                        continue
                    if kind == "pong" and msg.get("id") == RELEASE_MARK:
                        self.seen.released_answered += 1
                        continue
                    if self.faults.drop_server[kind] > 0:
                        self.faults.drop_server[kind] -= 1
                        self.seen.dropped += 1
                        continue
                    self.seen.server_types[kind] += 1
                    if kind == "welcome":
                        session["epoch"] = int(msg.get("epoch") or 0)
                    if kind == "error":
                        self.seen.error_codes[str(msg.get("code"))] += 1
                    delay = self.faults.delay_server_s.get(kind, 0.0)
                if delay:
                    await asyncio.sleep(delay)
                await down.send(text)
            if up.close_code is not None:
                await down.close(up.close_code, up.close_reason or "")
        except ConnectionClosed:
            pass
        finally:
            await _close_quietly(down, up)


def _parse(text: str | bytes) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


async def _close_quietly(*sockets: ServerConnection | ClientConnection) -> None:
    for ws in sockets:
        try:
            await ws.close()
        except Exception:  # already gone
            pass
