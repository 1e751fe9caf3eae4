"""Half-open handshakes: a deadline and a cap for connections that never finish a request head.

uvicorn starts its keep-alive timer only after a response, and its ``--limit-concurrency`` is
checked only once a request head is complete, so a client that sends half a request (a
WebSocket upgrade without its final blank line, say) holds a connection and a file
descriptor until it goes away itself; the per-address socket cap (transport/socket_caps.py)
never sees it, because the application is not called before the head is complete.

:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with two bounds, per ASGI
process (docs/security.md, "Bounds"):

* ``HANDSHAKE_TIMEOUT_MS`` (10 s): from the connection (or the first byte of a later request
  on a kept-alive one) to the end of its request head. Past it the connection gets
  ``408 Request Timeout`` and is closed.
* ``MAX_UNFINISHED_HANDSHAKES`` (1,000): connections waiting for their request head. A new
  one past the cap closes the oldest waiting one (``408``), so a flood of half-open
  connections cannot lock out clients whose handshakes take milliseconds.

Once the head is complete nothing changes: an upgraded WebSocket or a request in progress is
no longer "unfinished". uvicorn loads it with ``--http transport.handshake:GuardedHttpToolsProtocol``
(``transport.hub.UVICORN_WS_ARGS``, the Procfile).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from core import config
from transport.ws_protocol import AnsweringWebSocketsSansIOProtocol

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 41\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"the request head did not arrive in time.\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a handshake deadline and a cap on unfinished heads."""

    # This process's connections waiting for a request head, oldest first (-> nothing).
    unfinished: ClassVar[OrderedDict[GuardedHttpToolsProtocol, None]] = OrderedDict()
    _bounds: ClassVar[tuple[float, int] | None] = None
    _deadline: asyncio.TimerHandle | None = None

    @classmethod
    def bounds(cls) -> tuple[float, int]:
        """``(timeout in s, cap)`` from the environment, read once per process."""
        if cls._bounds is None:
            timeout_ms = config.read_duration_ms("HANDSHAKE_TIMEOUT_MS")
            cls._bounds = (timeout_ms / 1000, config.read_int("MAX_UNFINISHED_HANDSHAKES"))
        return cls._bounds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.ws_protocol_class is WebSocketsSansIOProtocol:  # it answers what it refuses
            self.ws_protocol_class = AnsweringWebSocketsSansIOProtocol
        self._waiting()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._waiting()  # a later request on a kept-alive connection: its head has a deadline too

    def on_headers_complete(self) -> None:
        self._done()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()
        super().connection_lost(exc)

    def _waiting(self) -> None:
        if self._deadline is not None:
            return
        timeout_s, cap = self.bounds()
        self._deadline = self.loop.call_later(timeout_s, self._expire)
        self.unfinished[self] = None
        if cap > 0:
            while len(self.unfinished) > cap:
                oldest = next(iter(self.unfinished))
                oldest._expire()

    def _done(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.unfinished.pop(self, None)

    def _expire(self) -> None:
        """408 and close: the head did not arrive in time (or the cap needs the room)."""
        self._done()
        transport: Any = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(_TIMEOUT_RESPONSE)
            transport.close()
