"""The wire form of every message: compact JSON, error frames, client frame parsing, flood windows.

Django-free. The protocol's constants (version, limits, close and error codes) are in
``worldboss_sdk.protocol``, the one source the SDK uses too (see docs/protocol.md).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from core import messages
from core.errors import FrameTooLarge, LiveOpsError, MalformedFrame
from worldboss_sdk.protocol import MAX_FRAME_BYTES

# No protocol frame nests deeper than 3 (``damage.breakdown``, ``heartbeat.inflight``): a
# frame nested deeper than this is refused before ``json.loads`` sees it, so a frame of
# thousands of ``[`` can never raise RecursionError (or cost a deep parse) in a consumer.
MAX_FRAME_DEPTH = 16
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"\[\]|\{\}")


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


def encode(message: Mapping[str, Any]) -> str:
    """Compact JSON, the wire form of every message (serialized once, sent to every socket)."""
    return json.dumps(message, separators=(",", ":"))


def error_frame(err: LiveOpsError, **context: Any) -> str:
    """``{"type": "error", "code", "detail", ...extra, ...context}`` as wire text."""
    return encode(messages.error_body(code=err.code, detail=err.detail, extras={**err.extra, **context}))


def too_deep(text: str, limit: int = MAX_FRAME_DEPTH) -> bool:
    """Whether JSON-ish ``text`` nests ``[``/``{`` deeper than ``limit`` (brackets inside
    strings do not count). At most ``limit`` C-speed passes over the text's brackets,
    whatever the text. Unbalanced brackets (not JSON anyway) only count as deep when what
    ``json.loads`` would descend into could exceed the limit."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text) if '"' in text else text)
    for _ in range(limit):
        shorter = _PAIR.sub("", brackets)
        if not shorter:
            return False
        if len(shorter) == len(brackets):  # only unmatched brackets are left
            return shorter.count("[") + shorter.count("{") > limit
        brackets = shorter
    return True


def parse_frame(text: str | None, data: bytes | None) -> dict[str, Any]:
    """Decode one client frame into a dict with a string ``type`` or raise a typed error."""
    if text is None:
        raise MalformedFrame("binary frames are not part of the protocol; send JSON text")
    if len(text) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {len(text)} characters exceeds {MAX_FRAME_BYTES} bytes")
    # Cheap first: a frame with few brackets cannot be deep (the hot path never scans).
    if text.count("[") + text.count("{") > MAX_FRAME_DEPTH and too_deep(text):
        raise MalformedFrame(f"frame nests deeper than {MAX_FRAME_DEPTH} levels")
    try:
        frame = json.loads(text)
    except RecursionError:  # unreachable after the depth check; kept as the last guard
        raise MalformedFrame(f"frame nests deeper than {MAX_FRAME_DEPTH} levels") from None
    except ValueError:
        raise MalformedFrame("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise MalformedFrame(f"frame must be a JSON object, got {type(frame).__name__}")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise MalformedFrame("frame needs a string 'type'")
    return frame
