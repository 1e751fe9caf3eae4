"""The uvicorn fast path: pre-built WebSocket frames written straight to a socket's transport.

The one module that knows uvicorn's private objects (docs/fanout.md). Everything else asks
for a writer and treats it as an opaque ``(frame: bytes) -> bool``::

    from transport.fastpath import text_frame, writer_for

    write = writer_for(asgi_send)        # None: use the ordinary ASGI send for this socket
    if write is None or not write(text_frame(text)):
        await asgi_send({"type": "websocket.send", "text": text})

Why it exists: server frames are unmasked, so the hub frames each published message ONCE per
process and hands the same bytes to every socket; the writer puts them on the wire with one
``transport.write``: no ASGI message dict, no per-socket encoding, no coroutine.

When there is a writer: the ASGI ``send`` is (possibly behind Channels' session wrappers)
the bound ``send`` of uvicorn's ``websockets-sansio`` protocol (``--ws websockets-sansio``,
transport/hub.py ``UVICORN_WS_ARGS``), the connection negotiated no extension (per-message
deflate off: a frame built once cannot be compressed per connection), and the installed
uvicorn is in the range the fast path was tested with (:data:`TESTED_UVICORN`, the same
range pyproject.toml pins). Anything else (daphne, the Channels test communicator, another
uvicorn implementation or version) gets ``None``.

What a writer does per frame: while the connection is OPEN, no close was sent, the peer is
connected and the transport is writable and not closing, it writes the frame and returns
True. Otherwise it writes nothing and returns False, and the caller takes the ordinary ASGI
send, which waits for flow control and raises on a closed socket as it always does.

:data:`FASTPATH_STATS` counts, per process, writers handed out, sends left without one,
frames written and frames declined; tests/transport/test_fastpath.py reads them to prove
the fast path is the one in use under the production flags.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from websockets.protocol import State

# The uvicorn releases this module was tested against: [low, high). Keep in step with the
# uvicorn line of pyproject.toml's dependencies (tests/transport/test_fastpath.py checks).
TESTED_UVICORN = ((0, 54), (0, 55))
# The module of the protocol class whose private state the writer reads.
_SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
# Channels wraps the server's send (session middleware); the real one is behind real_send.
_MAX_WRAPPERS = 4

Writer = Callable[[bytes], bool]


@dataclass(slots=True)
class FastPathStats:
    """Per-process counters of the fast path (plain ints: one increment per event)."""

    writers: int = 0  # sends recognised: a writer was handed out
    no_writer: int = 0  # sends not recognised (or deflate negotiated): ASGI path for the socket
    fast_sends: int = 0  # frames written straight to a transport
    fallbacks: int = 0  # frames a writer declined (not open / not writable): ASGI path

    def snapshot(self) -> dict[str, int]:
        """The counters as a dict (for tests and diagnostics)."""
        return {
            "writers": self.writers,
            "no_writer": self.no_writer,
            "fast_sends": self.fast_sends,
            "fallbacks": self.fallbacks,
        }


FASTPATH_STATS = FastPathStats()


def text_frame(text: str) -> bytes:
    """One unmasked, unfragmented WebSocket text frame (RFC 6455 5.2) carrying ``text``."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + data


def _release(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


@cache
def is_supported() -> bool:
    """Whether the installed uvicorn is one the fast path was tested with (read once)."""
    try:
        release = _release(metadata.version("uvicorn"))
    except metadata.PackageNotFoundError:
        return False
    low, high = TESTED_UVICORN
    return release is not None and low <= release < high


def writer_for(send: Any) -> Writer | None:
    """A fast-path writer for the socket behind the ASGI ``send``, or None (see module doc).

    Call once per connection, after ``websocket.accept`` (the extensions are negotiated by
    then). Every call is counted in :data:`FASTPATH_STATS`.
    """
    write = _writer_for(send)
    if write is None:
        FASTPATH_STATS.no_writer += 1
    else:
        FASTPATH_STATS.writers += 1
    return write


def _writer_for(send: Any) -> Writer | None:
    if not is_supported():
        return None
    seen = 0
    while seen < _MAX_WRAPPERS and hasattr(send, "__self__") and hasattr(send.__self__, "real_send"):
        send = send.__self__.real_send
        seen += 1
    proto = getattr(send, "__self__", None)
    # isinstance, not the class's module: the server runs a subclass of uvicorn's protocol
    # (transport/ws_protocol.py answers the handshakes websockets refuses)
    sansio = sys.modules.get(_SANSIO_MODULE)  # not imported: no socket of that protocol exists
    if proto is None or sansio is None or not isinstance(proto, sansio.WebSocketsSansIOProtocol):
        return None
    conn = getattr(proto, "conn", None)
    transport = getattr(proto, "transport", None)
    writable = getattr(proto, "writable", None)
    if conn is None or transport is None or writable is None or getattr(conn, "extensions", None):
        return None
    open_state = State.OPEN
    stats = FASTPATH_STATS

    def write(frame: bytes) -> bool:
        if (
            conn.state is not open_state
            or proto.close_sent
            or proto.disconnected
            or not writable.is_set()
            or transport.is_closing()
        ):
            stats.fallbacks += 1
            return False
        transport.write(frame)
        stats.fast_sends += 1
        return True

    return write
