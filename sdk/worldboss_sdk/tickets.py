"""Sign player tickets: the game's backend vouches for its player (docs/sdk.md, "Player tickets").

The platform's gateway accepts ``/ws/shards/<hosted shard>/?ticket=<ticket>`` and takes the
ticket's ``sub`` as the player id. A ticket is ``v1.<kid>.<payload_b64url>.<sig_b64url>``:
``payload`` is compact JSON ``{"sub", "exp", "iat", "shard"?, "boss"?}``, ``sig`` is
HMAC-SHA256(secret, ``"v1.<kid>.<payload_b64url>"``), both unpadded base64url.

Sign on the game's BACKEND, never in a client: whoever holds the secret can be any player.
Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

__all__ = ["MAX_TICKET_TTL_S", "player_ticket_sign"]

MAX_TICKET_TTL_S = 24 * 3600  # the platform refuses tickets that live longer (exp - iat)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def player_ticket_sign(
    *,
    secret: bytes | str,
    key_id: str,
    player: str,
    ttl_s: int = 3600,
    shard: str | None = None,
    boss: str | None = None,
    now_s: float | None = None,
) -> str:
    """A ticket vouching for ``player`` for ``ttl_s`` seconds from ``now_s`` (default: now).

    ``key_id`` names ``secret`` in the platform's ``PLAYER_TICKET_KEYS``; ``shard``/``boss``
    limit the ticket to one shard key / boss slug. The player id must be 1-64 characters of
    letters, digits and ``_.:@-`` and not start with ``user:``, ``guest:`` or ``sim:`` (the
    platform's own ids): the platform refuses those, this signer does not check them.
    """
    if not isinstance(ttl_s, int) or isinstance(ttl_s, bool) or not 1 <= ttl_s <= MAX_TICKET_TTL_S:
        raise ValueError(f"ttl_s must be a whole number of seconds from 1 to {MAX_TICKET_TTL_S}")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    issued = int(time.time() if now_s is None else now_s)
    payload: dict[str, object] = {"sub": player, "exp": issued + ttl_s, "iat": issued}
    if shard is not None:
        payload["shard"] = shard
    if boss is not None:
        payload["boss"] = boss
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
    signed = f"v1.{key_id}.{body}"
    return f"{signed}.{_b64(hmac.new(key, signed.encode('ascii'), hashlib.sha256).digest())}"
