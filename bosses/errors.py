"""Typed errors of the platform. Each has a stable ``code`` used in error frames and JSON."""
from __future__ import annotations


class LiveOpsError(Exception):
    """Base class: ``code`` is machine-readable, ``str(err)`` is for humans."""

    code = "error"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(LiveOpsError):
    code = "invalid"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class UnknownBoss(LiveOpsError):
    code = "unknown_boss"


class UnknownShard(LiveOpsError):
    code = "unknown_shard"


class UnknownEpoch(LiveOpsError):
    code = "unknown_epoch"


class Unauthorized(LiveOpsError):
    code = "unauthorized"


class Fenced(LiveOpsError):
    """The session's epoch was retired (crash saga or retirement): reconnect for a new one."""

    code = "fenced"


class BossNotLive(LiveOpsError):
    code = "not_live"


class SeqGap(LiveOpsError):
    """A seq skipped ahead of last + 1: refused; resend in order."""

    code = "seq_gap"


class InvalidTransition(LiveOpsError):
    code = "invalid_transition"


class AuthorityUnavailable(LiveOpsError):
    """Redis did not answer in time: nothing was applied; retry the same seq later."""

    code = "authority_unavailable"


class RateLimited(LiveOpsError):
    code = "rate_limited"


class BufferFull(LiveOpsError):
    """A local buffer reached its bound while the authority is away: the hit is refused."""

    code = "buffer_full"
