"""The wire form of every message: compact JSON, error frames, client frame parsing, flood windows.

Django-free. The protocol's constants (version, limits, close and error codes) are in
``worldboss_sdk.protocol``, the one source the SDK uses too (see docs/protocol.md).
"""

from __future__ import annotations

import json
import time
from typing import Any

from core.errors import FrameTooLarge, LiveOpsError, MalformedFrame
from worldboss_sdk.protocol import MAX_FRAME_BYTES


class FrameWindow:
    """Counts a connection's frames in one-second windows (its flood limit)."""

    __slots__ = ("count", "started")

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
    """Compact JSON, the wire form of every message (serialized once, sent to every socket)."""
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
