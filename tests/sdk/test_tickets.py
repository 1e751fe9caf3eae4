"""The SDK's reference signer and the platform's verifier agree (and nothing else passes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import LiveOpsError
from core.tickets import MAX_TICKET_LIFETIME_S, player_ticket_verify
from worldboss_sdk import player_ticket_sign

SECRET = "a-secret-of-at-least-thirty-two-bytes!"
KEYS = {"game-1": SECRET.encode()}
NOW = 1_750_000_000

player_ids = st.from_regex(r"[A-Za-z0-9_.:@-]{1,64}", fullmatch=True).filter(
    lambda p: not p.startswith(("user:", "guest:", "sim:"))
)
shard_keys = st.none() | st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(player=player_ids, ttl=st.integers(1, MAX_TICKET_LIFETIME_S), shard=shard_keys, age=st.floats(0, 1))
def test_any_valid_id_and_ttl_round_trips(player: str, ttl: int, shard: str | None, age: float) -> None:
    ticket = player_ticket_sign(
        secret=SECRET, key_id="game-1", player=player, ttl_s=ttl, shard=shard, now_s=NOW
    )
    checked = player_ticket_verify(ticket=ticket, keys=KEYS, now_s=NOW + age * (ttl - 0.001), shard=shard)
    assert (checked.player, checked.shard, checked.expires_at_s) == (player, shard, NOW + ttl)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), player=player_ids)
def test_any_single_byte_change_is_refused(data: st.DataObject, player: str) -> None:
    ticket = player_ticket_sign(
        secret=SECRET.encode(), key_id="game-1", player=player, boss="dragon", now_s=NOW
    )
    at = data.draw(st.integers(0, len(ticket) - 1))
    new = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=!"))
    changed = ticket[:at] + new + ticket[at + 1 :]
    if changed == ticket:
        return
    with pytest.raises(LiveOpsError) as err:
        player_ticket_verify(ticket=changed, keys=KEYS, now_s=NOW, boss="dragon")
    assert err.value.code in ("ticket_invalid", "ticket_expired")


def test_the_signer_refuses_a_lifetime_the_platform_would_refuse() -> None:
    for ttl in (0, -1, MAX_TICKET_LIFETIME_S + 1):
        with pytest.raises(ValueError):
            player_ticket_sign(secret=SECRET, key_id="game-1", player="p", ttl_s=ttl)
