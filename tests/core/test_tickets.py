"""core/tickets.py: the player tickets a game's backend signs, checked without Django."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from core.errors import TicketExpired, TicketInvalid
from core.tickets import MAX_TICKET_CHARS, MAX_TICKET_LIFETIME_S, player_ticket_verify, ticket_keys_parse

SECRET = b"s" * 32
KEYS = {"k1": SECRET}
NOW = 1_700_000_000


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(payload: dict, *, kid: str = "k1", secret: bytes = SECRET) -> str:
    """A ticket built by hand from the documented format (docs/security.md)."""
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signed = f"v1.{kid}.{body}"
    return f"{signed}.{_b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())}"


def claims(**over) -> dict:
    return {"sub": "hero-1", "iat": NOW, "exp": NOW + 600, **over}


def verify(ticket: str, **kw):
    return player_ticket_verify(ticket=ticket, keys=kw.pop("keys", KEYS), now_s=kw.pop("now_s", NOW), **kw)


def test_a_ticket_built_from_the_documented_format_is_accepted() -> None:
    t = verify(forge(claims(shard="eu-1", boss="dragon")), shard="eu-1", boss="dragon")
    assert (t.player, t.key_id, t.shard, t.boss, t.expires_at_s) == (
        "hero-1",
        "k1",
        "eu-1",
        "dragon",
        NOW + 600,
    )


@pytest.mark.parametrize(
    ("ticket", "why"),
    [
        ("", "required"),
        ("v1.k1.abc", "v1.<kid>"),
        ("v2." + forge(claims())[3:], "v1.<kid>"),
        (forge(claims(), kid="k2"), "unknown key id"),
        (forge(claims(), secret=b"x" * 32), "signature"),
        (forge(claims())[:-2] + "AA", "signature"),
        (forge(claims()) + "=", "base64url"),
        ("v1.k1.!!!." + forge(claims()).rsplit(".", 1)[1], "signature"),  # checked before the payload
        ("v1." + "k" * 40 + ".a.b", "key id"),
        ("x" * (MAX_TICKET_CHARS + 1), "longer"),
        (forge(claims(sub="user:1")), "platform id"),
        (forge(claims(sub="guest:abc")), "platform id"),
        (forge(claims(sub="sim:1")), "platform id"),
        (forge(claims(sub="a b")), "'sub'"),
        (forge(claims(sub="x" * 65)), "'sub'"),
        (forge(claims(sub=7)), "'sub'"),
        (forge(claims(exp=NOW + MAX_TICKET_LIFETIME_S + 1)), "at most"),
        (forge(claims(exp=NOW)), "at most"),
        (forge(claims(exp="soon")), "unix seconds"),
        (forge(claims(exp=True)), "unix seconds"),
        (forge(claims(role="admin")), "only"),
        (forge(claims(shard="us-1")), "another shard"),
        (forge(claims(boss="other")), "another boss"),
    ],
)
def test_bad_tickets_are_refused_with_ticket_invalid(ticket: str, why: str) -> None:
    with pytest.raises(TicketInvalid) as err:
        verify(ticket, shard="eu-1", boss="dragon")
    assert err.value.code == "ticket_invalid" and why in err.value.detail


def test_a_ticket_for_a_shard_is_refused_where_no_shard_is_given() -> None:
    with pytest.raises(TicketInvalid):
        verify(forge(claims(shard="eu-1")))


def test_expiry_and_clock_skew() -> None:
    ticket = forge(claims())
    assert verify(ticket, now_s=NOW + 599).player == "hero-1"
    with pytest.raises(TicketExpired) as err:
        verify(ticket, now_s=NOW + 600)
    assert err.value.code == "ticket_expired"
    # issued a little in the future (the signer's clock runs ahead): accepted within the skew
    assert verify(ticket, now_s=NOW - 30).player == "hero-1"
    with pytest.raises(TicketExpired):
        verify(ticket, now_s=NOW - 3600)


def test_rotation_both_keys_verify_until_one_is_removed() -> None:
    old, new = forge(claims(), kid="old", secret=b"o" * 32), forge(claims(), kid="new", secret=b"n" * 40)
    keys = {"old": b"o" * 32, "new": b"n" * 40}
    assert verify(old, keys=keys).player == verify(new, keys=keys).player == "hero-1"
    with pytest.raises(TicketInvalid):
        verify(old, keys={"new": b"n" * 40})


def test_ticket_keys_parse() -> None:
    assert ticket_keys_parse("") == {}
    assert ticket_keys_parse(f"a:{'x' * 32}, b:{'y' * 33}") == {"a": b"x" * 32, "b": b"y" * 33}
    for bad, why in [
        ("a:short", "at least 32"),
        ("nocolon", "<kid>:<secret>"),
        (f"a:{'x' * 32},a:{'y' * 32}", "twice"),
    ]:
        with pytest.raises(ValueError, match=why):
            ticket_keys_parse(bad)
