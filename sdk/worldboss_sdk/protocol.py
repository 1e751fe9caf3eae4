"""The wire protocol, version 1: the one source of its constants (docs/protocol.md).

The platform's server imports these same names (``core.wire``, ``core.errors``, the
consumers), the SDK's client uses them, and the pages receive them as JSON from the server
(``transport.views.protocol_constants``), so no side carries a copy of a code.

Pure data: no import beyond the standard library.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1

# A client frame larger than this is refused (uvicorn also enforces it with
# --ws-max-size, so a 1 MiB frame never even reaches a consumer in production).
MAX_FRAME_BYTES: Final = 64 * 1024

# --- limits a delta must fit (the server validates them; the SDK's buffer respects them) ---
# Lua numbers are IEEE doubles: whole numbers are exact below 2^53. One delta under 2^40
# leaves room for thousands of maximal deltas in one tick before a sum could lose precision.
MAX_DELTA_AMOUNT: Final = 2**40
MAX_SEQ: Final = 2**53 - 1
# Players one breakdown may name: a delta's, and a heartbeat's optional ``breakdown`` of the
# damage it reports held (sum <= pending + in-flight amount; a fair crash saga credits it).
MAX_BREAKDOWN_ENTRIES: Final = 1_000
MAX_PLAYER_ID_LENGTH: Final = 64
# Player ids: 1-64 letters, digits and ``_.:@-``. The patterns are anchored with ``\A``/``\Z``
# (not ``^``/``$``, whose ``$`` also matches before a trailing newline): no control character
# ever reaches a Redis script or the event log. ``core.validation`` applies this one rule
# everywhere an id enters the platform; the SDK's buffer refuses what it would refuse.
PLAYER_ID_PATTERN: Final = rf"\A[A-Za-z0-9_.:@-]{{1,{MAX_PLAYER_ID_LENGTH}}}\Z"
# Ids the platform hands out itself (Django users, guests, the simulator): no game server's
# breakdown, ticket or simulated player may name one (docs/security.md, "Player identity").
RESERVED_PLAYER_PREFIXES: Final = ("user:", "guest:", "sim:")
# Shard keys: lowercase letters, digits, '-' and '_', at most 64 characters.
SHARD_KEY_PATTERN: Final = r"\A[a-z0-9][a-z0-9_-]{0,63}\Z"


class CloseCode:
    """WebSocket close codes (4000-4999 are reserved for applications by RFC 6455)."""

    NORMAL: Final = 1000
    TOO_LARGE: Final = 1009  # RFC 6455 "message too big" (also what uvicorn sends)
    INTERNAL_ERROR: Final = 1011  # RFC 6455 "unexpected condition": a server fault, after an error frame
    TRY_AGAIN: Final = 1013  # RFC 6455 "try again later": Redis unreachable right now
    MALFORMED: Final = 4400  # too many malformed frames (each one also got an error frame)
    UNAUTHORIZED: Final = 4401  # missing/wrong/rotated token, or auth timeout
    FORBIDDEN: Final = 4403  # authenticated but not allowed (retired shard, not staff)
    UNKNOWN_BOSS: Final = 4404  # /ws/bosses/<slug>/ with an unknown slug; unknown shard
    RATE_LIMITED: Final = 4429  # repeated abuse past the rate limit


# Closes after which reconnecting cannot help (the same credentials get the same answer).
PERMANENT_CLOSE_CODES: Final = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.UNKNOWN_BOSS}
)


class ErrorCode:
    """The ``code`` of every ``{"type": "error"}`` frame (and of the typed errors behind it)."""

    ERROR: Final = "error"
    INVALID: Final = "invalid"
    INVALID_AMOUNT: Final = "invalid_amount"
    MALFORMED: Final = "malformed"
    UNKNOWN_TYPE: Final = "unknown_type"
    TOO_LARGE: Final = "too_large"
    UNKNOWN_BOSS: Final = "unknown_boss"
    UNKNOWN_SHARD: Final = "unknown_shard"
    UNKNOWN_EPOCH: Final = "unknown_epoch"
    UNAUTHORIZED: Final = "unauthorized"
    FORBIDDEN: Final = "forbidden"
    FENCED: Final = "fenced"
    NOT_LIVE: Final = "not_live"
    SEQ_GAP: Final = "seq_gap"
    INVALID_TRANSITION: Final = "invalid_transition"
    AUTHORITY_UNAVAILABLE: Final = "authority_unavailable"
    RATE_LIMITED: Final = "rate_limited"
    BUFFER_FULL: Final = "buffer_full"
    # player identity (docs/security.md, "Player identity")
    TICKET_INVALID: Final = "ticket_invalid"  # malformed, unknown key, bad signature, wrong shard/boss
    TICKET_EXPIRED: Final = "ticket_expired"  # past exp (or not valid yet): sign a fresh one
    WRONG_SHARD_KIND: Final = "wrong_shard_kind"  # a player on a game server's shard, or the reverse
    TOO_MANY_PLAYERS: Final = "too_many_players"  # the boss accepts no new player ids (cap reached)
    # the backend API (docs/api.md)
    NOT_FOUND: Final = "not_found"  # no such route or object
    METHOD_NOT_ALLOWED: Final = "method_not_allowed"
    ALREADY_CLAIMED: Final = "already_claimed"  # a reward grant claimed with another claim_id


class Status:
    """A boss's status as the authority reports it in ``state`` messages."""

    DRAFT: Final = "draft"
    LIVE: Final = "live"
    PAUSED: Final = "paused"
    DEFEATED: Final = "defeated"
    EXPIRED: Final = "expired"


# A fight in one of these is over: damage is refused and nothing will change any more.
ENDED_STATUSES: Final = frozenset({Status.DEFEATED, Status.EXPIRED})


def as_dict() -> dict[str, object]:
    """Every constant a page needs, as JSON-ready data (served to the browser by the server)."""
    return {
        "version": PROTOCOL_VERSION,
        "maxFrameBytes": MAX_FRAME_BYTES,
        "close": {k: v for k, v in vars(CloseCode).items() if k.isupper()},
        "permanentCloseCodes": sorted(PERMANENT_CLOSE_CODES),
        "errors": {k: v for k, v in vars(ErrorCode).items() if k.isupper()},
        "status": {k: v for k, v in vars(Status).items() if k.isupper()},
        "endedStatuses": sorted(ENDED_STATUSES),
    }
