"""Wire protocol constants shared by every WebSocket consumer (see docs/protocol.md).

One place for the protocol version, frame limits, close codes and the error frame, so the
boss state consumer, the shard gateway, the ops consumer and the SDK agree.
"""
from __future__ import annotations

import json
import time
from typing import Any

from channels.exceptions import StopConsumer

from bosses.errors import InvalidInput, LiveOpsError

PROTOCOL_VERSION = 1

# A client frame larger than this is refused (uvicorn also enforces it with
# --ws-max-size, so a 1 MiB frame never even reaches a consumer in production).
MAX_FRAME_BYTES = 64 * 1024

# Close codes (4000-4999 are reserved for applications by RFC 6455).
CLOSE_NORMAL = 1000
CLOSE_TOO_LARGE = 1009          # RFC 6455 "message too big" (also what uvicorn sends)
CLOSE_TRY_AGAIN = 1013          # RFC 6455 "try again later": Redis unreachable right now
CLOSE_MALFORMED = 4400          # too many malformed frames (each one also got an error frame)
CLOSE_UNAUTHORIZED = 4401       # missing/wrong/rotated token, or auth timeout
CLOSE_FORBIDDEN = 4403          # authenticated but not allowed (retired shard, not staff)
CLOSE_UNKNOWN_BOSS = 4404       # /ws/bosses/<slug>/ with an unknown slug; unknown shard
CLOSE_RATE_LIMITED = 4429       # repeated abuse past the rate limit

# Errors that only exist on the wire (the core's errors are in bosses/errors.py).


class MalformedFrame(InvalidInput):
    """Not JSON, binary, not an object, or a field of the wrong type."""

    code = "malformed"


class UnknownType(InvalidInput):
    """A frame whose ``type`` this endpoint does not handle."""

    code = "unknown_type"


class FrameTooLarge(InvalidInput):
    code = "too_large"


class FrameWindow:
    """Counts a connection's frames in one-second windows (its flood limit)."""

    __slots__ = ("started", "count")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.count = 0

    def add(self) -> int:
        """Count one frame; returns how many arrived in the current window."""
        now = time.monotonic()
        if now - self.started >= 1.0:
            self.started, self.count = now, 0
        self.count += 1
        return self.count


def encode(message: dict[str, Any]) -> str:
    """Compact JSON, the wire form of every message (same as bosses.broadcast.encode)."""
    return json.dumps(message, separators=(",", ":"))


def error_frame(err: LiveOpsError, **context: Any) -> str:
    """``{"type": "error", "code", "detail", ...extra, ...context}`` as wire text."""
    body: dict[str, Any] = {"type": "error", "code": err.code, "detail": err.detail}
    for key, value in {**err.extra, **context}.items():
        if key not in body and value is not None:
            body[key] = value
    return encode(body)


def parse_frame(text: str | None, data: bytes | None) -> dict[str, Any]:
    """Decode one client frame into a dict with a string ``type`` or raise a typed error."""
    if text is None:
        raise MalformedFrame("binary frames are not part of the protocol; send JSON text")
    if len(text) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {len(text)} characters exceeds {MAX_FRAME_BYTES} bytes")
    try:
        frame = json.loads(text)
    except ValueError:
        raise MalformedFrame("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise MalformedFrame(f"frame must be a JSON object, got {type(frame).__name__}")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise MalformedFrame("frame needs a string 'type'")
    return frame


class DirectDispatchMixin:
    """For consumers without a channel layer: one plain receive -> dispatch loop.

    Channels' ``AsyncConsumer.__call__`` multiplexes the client and the channel layer with
    ``await_many_dispatch``, which creates a task and an ``asyncio.wait`` per incoming frame.
    A consumer with no layer has one source, so it awaits ``receive()`` directly: same
    semantics (frames handled one at a time, in order; ``StopConsumer`` ends it), a fraction
    of the per-frame cost. Put it before the Channels base class.
    """

    channel_layer_alias = "__no_channel_layer__"

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale DB connections before every handler through a thread-pool
        # hop (~50-100 us per frame). Handlers here reach the ORM only through
        # database_sync_to_async, which does that itself, so frames skip the hop.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
