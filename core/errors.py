"""Typed errors of the platform. Each has a stable ``code`` used in error frames and JSON.

The base class and the codes come from the protocol (``worldboss_sdk``), the one source the
SDK uses too.
"""

from __future__ import annotations

from worldboss_sdk.errors import BufferFull, LiveOpsError
from worldboss_sdk.protocol import ErrorCode

__all__ = [
    "AuthorityUnavailable",
    "BossNotLive",
    "BufferFull",
    "Fenced",
    "Forbidden",
    "FrameTooLarge",
    "InvalidAmount",
    "InvalidInput",
    "InvalidTransition",
    "LiveOpsError",
    "MalformedFrame",
    "RateLimited",
    "SeqGap",
    "Unauthorized",
    "UnknownBoss",
    "UnknownEpoch",
    "UnknownShard",
    "UnknownType",
]


class InvalidInput(LiveOpsError):
    code = ErrorCode.INVALID


class InvalidAmount(InvalidInput):
    code = ErrorCode.INVALID_AMOUNT


class UnknownBoss(LiveOpsError):
    code = ErrorCode.UNKNOWN_BOSS


class UnknownShard(LiveOpsError):
    code = ErrorCode.UNKNOWN_SHARD


class UnknownEpoch(LiveOpsError):
    code = ErrorCode.UNKNOWN_EPOCH


class Unauthorized(LiveOpsError):
    code = ErrorCode.UNAUTHORIZED


class Fenced(LiveOpsError):
    """The session's epoch was retired (crash saga or retirement): reconnect for a new one."""

    code = ErrorCode.FENCED


class BossNotLive(LiveOpsError):
    code = ErrorCode.NOT_LIVE


class SeqGap(LiveOpsError):
    """A seq skipped ahead of last + 1: refused; resend in order."""

    code = ErrorCode.SEQ_GAP


class InvalidTransition(LiveOpsError):
    code = ErrorCode.INVALID_TRANSITION


class AuthorityUnavailable(LiveOpsError):
    """Redis did not answer in time: nothing was applied; retry the same seq later."""

    code = ErrorCode.AUTHORITY_UNAVAILABLE


class RateLimited(LiveOpsError):
    code = ErrorCode.RATE_LIMITED


class Forbidden(LiveOpsError):
    """Authenticated, but not allowed to do this (retired shard, not staff)."""

    code = ErrorCode.FORBIDDEN


# Errors that only exist on the wire.


class MalformedFrame(InvalidInput):
    """Not JSON, binary, not an object, or a field of the wrong type."""

    code = ErrorCode.MALFORMED


class UnknownType(InvalidInput):
    """A frame whose ``type`` this endpoint does not handle."""

    code = ErrorCode.UNKNOWN_TYPE


class FrameTooLarge(InvalidInput):
    """A frame over ``MAX_FRAME_BYTES``."""

    code = ErrorCode.TOO_LARGE
