"""Typed errors both sides of the wire raise: each carries a stable ``code`` (protocol.ErrorCode).

The platform's server derives its own error classes (``core.errors``) from
:class:`LiveOpsError`, so an error frame's code and a caught exception always agree.
"""

from __future__ import annotations

from worldboss_sdk.protocol import ErrorCode


class LiveOpsError(Exception):
    """Base class: ``code`` is machine-readable, ``str(err)`` is for humans."""

    code: str = ErrorCode.ERROR

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BufferFull(LiveOpsError):
    """A local buffer reached its bound while the authority is away: the hit is refused."""

    code = ErrorCode.BUFFER_FULL
