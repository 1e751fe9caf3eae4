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
    "TicketExpired",
    "TicketInvalid",
    "TooManyPlayers",
    "Unauthorized",
    "UnknownBoss",
    "UnknownEpoch",
    "UnknownShard",
    "UnknownType",
    "WrongShardKind",
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


# Player identity and shard kinds (docs/security.md).


class TicketInvalid(Unauthorized):
    """A player ticket that is malformed, signed by an unknown key or with a bad signature,
    names another shard or boss, or names an id a ticket may not carry."""

    code = ErrorCode.TICKET_INVALID


class TicketExpired(Unauthorized):
    """A player ticket past its ``exp`` (or issued in the future beyond the clock skew)."""

    code = ErrorCode.TICKET_EXPIRED


class WrongShardKind(Forbidden):
    """Players on a game server's shard, or a game server's token on a hosted shard."""

    code = ErrorCode.WRONG_SHARD_KIND


class TooManyPlayers(LiveOpsError):
    """The boss reached ``MAX_PLAYERS_PER_BOSS`` distinct player ids: a new id is refused
    (players it already accepted keep playing)."""

    code = ErrorCode.TOO_MANY_PLAYERS


# Errors of the game backend's HTTP API (api/, docs/api.md).


class NotFound(LiveOpsError):
    """No such resource (a fight, a player's contribution, a reward grant, a route)."""

    code = ErrorCode.NOT_FOUND


class MethodNotAllowed(LiveOpsError):
    """The route exists, but not with this HTTP method."""

    code = ErrorCode.METHOD_NOT_ALLOWED


class AlreadyClaimed(LiveOpsError):
    """A reward grant was already claimed with another ``claim_id``."""

    code = ErrorCode.ALREADY_CLAIMED
