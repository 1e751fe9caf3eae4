"""Player tickets: a game's backend vouches for its player (docs/security.md, "Player identity").

A ticket is ``v1.<kid>.<payload_b64url>.<sig_b64url>``:

* ``kid``: the id of the shared secret that signed it (``PLAYER_TICKET_KEYS``; several ids
  let a secret be rotated without a gap);
* ``payload``: compact JSON ``{"sub": "<player id>", "exp": <unix s>, "iat": <unix s>,
  "shard": "<key>"?, "boss": "<slug>"?}``, unpadded base64url;
* ``sig``: HMAC-SHA256(secret, ``"v1.<kid>.<payload_b64url>"``), unpadded base64url.

The SDK's reference signer is ``worldboss_sdk.tickets.player_ticket_sign``. Pure Python: no
Django, no clock of its own (the caller passes ``now_s``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import TicketExpired, TicketInvalid
from core.validation import PLAYER_ID_RULE, player_id_problem
from worldboss_sdk.protocol import RESERVED_PLAYER_PREFIXES

__all__ = [
    "MAX_TICKET_CHARS",
    "MAX_TICKET_LIFETIME_S",
    "MIN_SECRET_BYTES",
    "RESERVED_PREFIXES",
    "TICKET_SKEW_S",
    "TICKET_VERSION",
    "PlayerTicket",
    "player_ticket_verify",
    "ticket_keys_parse",
]

TICKET_VERSION = "v1"
MAX_TICKET_CHARS = 1024  # a real ticket is ~200 characters; anything longer is refused unread
MAX_TICKET_LIFETIME_S = 24 * 3600  # exp - iat
TICKET_SKEW_S = 60  # clocks of the signer and the platform may differ this much
MIN_SECRET_BYTES = 32
# Ids the platform hands out itself (Django users, guests, the simulator): a ticket may not
# claim one, or a game backend could act as a platform account.
RESERVED_PREFIXES = RESERVED_PLAYER_PREFIXES
KEY_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")
_B64URL = re.compile(r"\A[A-Za-z0-9_-]+\Z")
_FIELDS = frozenset({"sub", "exp", "iat", "shard", "boss"})


@dataclass(frozen=True)
class PlayerTicket:
    """A verified ticket: the player id it vouches for and what it was limited to."""

    player: str
    key_id: str
    issued_at_s: int
    expires_at_s: int
    shard: str | None = None
    boss: str | None = None


def _b64decode(text: str) -> bytes:
    if not _B64URL.match(text):
        raise TicketInvalid("the ticket is not base64url (unpadded)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TicketInvalid("the ticket is not base64url (unpadded)") from None


def _unix_s(payload: Mapping[str, object], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise TicketInvalid(f"the ticket's {name!r} must be a whole number of unix seconds")
    return value


def _optional_text(payload: Mapping[str, object], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
        raise TicketInvalid(f"the ticket's {name!r} must be a non-empty string of at most 64 characters")
    return value


def player_ticket_verify(
    *,
    ticket: str,
    keys: Mapping[str, bytes],
    now_s: float,
    shard: str | None = None,
    boss: str | None = None,
) -> PlayerTicket:
    """Check a ticket signed with one of ``keys`` (key id -> secret) at time ``now_s``.

    ``shard``/``boss``: where it is used; a ticket that names a shard (or boss) is valid
    there only. Raises :class:`TicketExpired` past ``exp`` (or with ``iat`` in the future
    beyond ``TICKET_SKEW_S``) and :class:`TicketInvalid` for anything else wrong; the
    signature is checked (in constant time) before the payload is read.
    """
    key_id, payload_b64 = _signed_parts(ticket, keys)
    payload = _payload(payload_b64)
    player = _player(payload)
    issued, expires = _lifetime(payload, now_s)
    ticket_shard, ticket_boss = _optional_text(payload, "shard"), _optional_text(payload, "boss")
    if ticket_shard is not None and ticket_shard != shard:
        raise TicketInvalid("the ticket is for another shard")
    if ticket_boss is not None and boss is not None and ticket_boss != boss:
        raise TicketInvalid("the ticket is for another boss")
    return PlayerTicket(player, key_id, issued, expires, ticket_shard, ticket_boss)


def _signed_parts(ticket: str, keys: Mapping[str, bytes]) -> tuple[str, str]:
    """The key id and the base64 payload of a well-formed ticket whose signature matches."""
    if not isinstance(ticket, str) or not ticket:
        raise TicketInvalid("a ticket is required")
    if len(ticket) > MAX_TICKET_CHARS:
        raise TicketInvalid(f"the ticket is longer than {MAX_TICKET_CHARS} characters")
    parts = ticket.split(".")
    if len(parts) != 4 or parts[0] != TICKET_VERSION:
        raise TicketInvalid(f"a ticket is {TICKET_VERSION}.<kid>.<payload>.<signature>")
    _, key_id, payload_b64, sig_b64 = parts
    if not KEY_ID_RE.match(key_id):
        raise TicketInvalid("the ticket's key id is not 1-32 characters of letters, digits, '_' and '-'")
    secret = keys.get(key_id)
    if secret is None:
        raise TicketInvalid(f"the ticket is signed with an unknown key id {key_id!r}")
    signature = _b64decode(sig_b64)
    expected = hmac.new(secret, f"{TICKET_VERSION}.{key_id}.{payload_b64}".encode("ascii"), hashlib.sha256)
    # the base64 text is compared too: a second spelling of the same bytes is not the ticket
    if not hmac.compare_digest(signature, expected.digest()) or _b64encode(signature) != sig_b64:
        raise TicketInvalid("the ticket's signature does not match")
    return key_id, payload_b64


def _payload(payload_b64: str) -> dict[str, object]:
    """The signed payload: a JSON object with known fields only."""
    try:
        payload = json.loads(_b64decode(payload_b64))
    except (UnicodeDecodeError, ValueError):
        raise TicketInvalid("the ticket's payload is not JSON") from None
    if not isinstance(payload, dict) or set(payload) - _FIELDS:
        raise TicketInvalid(f"the ticket's payload must be an object with {sorted(_FIELDS)} only")
    return payload


def _player(payload: Mapping[str, object]) -> str:
    """The player id (``sub``): a valid id outside the platform's reserved prefixes."""
    player = payload.get("sub")
    if player_id_problem(player, platform_ids=True) is not None:
        raise TicketInvalid(f"the ticket's 'sub' must be {PLAYER_ID_RULE}")
    if player_id_problem(player) is not None:
        raise TicketInvalid(f"a ticket may not name a platform id ({', '.join(RESERVED_PREFIXES)}...)")
    return str(player)


def _lifetime(payload: Mapping[str, object], now_s: float) -> tuple[int, int]:
    """``iat`` and ``exp``: a lifetime within the limit that contains ``now_s`` (with the skew)."""
    issued, expires = _unix_s(payload, "iat"), _unix_s(payload, "exp")
    if expires <= issued or expires - issued > MAX_TICKET_LIFETIME_S:
        raise TicketInvalid(f"a ticket lives more than 0 and at most {MAX_TICKET_LIFETIME_S} s (exp - iat)")
    if now_s >= expires:
        raise TicketExpired("the ticket has expired: ask the game for a fresh one")
    if issued > now_s + TICKET_SKEW_S:
        raise TicketExpired("the ticket is not valid yet (issued in the future): check the signer's clock")
    return issued, expires


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def ticket_keys_parse(text: str) -> dict[str, bytes]:
    """``"kid1:secret1,kid2:secret2"`` -> ``{kid: secret bytes}``; ValueError naming the problem
    (a malformed entry, a duplicate id, a secret under ``MIN_SECRET_BYTES`` bytes)."""
    out: dict[str, bytes] = {}
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        key_id, sep, secret = entry.partition(":")
        if not sep or not KEY_ID_RE.match(key_id):
            raise ValueError(f"entry {key_id[:32]!r} is not <kid>:<secret> (kid: 1-32 of A-Z a-z 0-9 _ -)")
        if key_id in out:
            raise ValueError(f"key id {key_id!r} appears twice")
        raw = secret.encode("utf-8")
        if len(raw) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the secret of key id {key_id!r} is {len(raw)} bytes; at least {MIN_SECRET_BYTES}"
            )
        out[key_id] = raw
    return out
