"""The SDK's webhook verifier: what it accepts, and that any change to body, timestamp or
signature is refused (property tests)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worldboss_sdk import WebhookVerificationError, webhook_verify
from worldboss_sdk.webhooks import (
    MAX_SIGNATURES,
    WebhookBadSignature,
    WebhookMalformed,
    WebhookStale,
    webhook_sign,
    webhook_signature_header,
)

SECRET = "whsec_test-secret"
NOW = 1_800_000_000
BODY = json.dumps({"id": "wh_1", "event": "boss.defeated", "data": {"version": 7}}).encode()


def plain_sign(secret: str, timestamp: str, body: bytes) -> str:
    """The scheme as docs/webhooks.md states it, written out independently of the SDK."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed(body: bytes = BODY, ts: int = NOW, secret: str = SECRET) -> dict:
    return {
        "secret": secret,
        "body": body,
        "timestamp": str(ts),
        "signature": f"v1={plain_sign(secret, str(ts), body)}",
        "now_s": NOW,
    }


def test_a_signed_body_verifies_and_comes_back_parsed():
    assert webhook_verify(**signed()) == json.loads(BODY)
    assert webhook_sign(secret=SECRET, timestamp=NOW, body=BODY) == plain_sign(SECRET, str(NOW), BODY)


def test_the_secret_may_be_bytes():
    assert webhook_verify(**{**signed(), "secret": SECRET.encode()})["id"] == "wh_1"


def test_any_of_several_v1_values_may_match_during_a_rotation():
    header = webhook_signature_header(secrets=["whsec_new", SECRET], timestamp=NOW, body=BODY)
    assert header.count("v1=") == 2
    assert webhook_verify(**{**signed(), "signature": header})["event"] == "boss.defeated"
    # comma-separated, with a later scheme's value next to it
    commas = header.replace(" ", ",") + ",v2=whatever"
    assert webhook_verify(**{**signed(), "signature": commas})["id"] == "wh_1"


@pytest.mark.parametrize("skew_s", [-301, 301, 10_000])
def test_a_timestamp_beyond_the_tolerance_is_stale(skew_s):
    with pytest.raises(WebhookStale) as err:
        webhook_verify(**signed(ts=NOW + skew_s))
    assert err.value.code == "webhook_stale"


def test_the_tolerance_is_the_callers():
    assert webhook_verify(**signed(ts=NOW - 900), tolerance_s=1_000)
    with pytest.raises(WebhookStale):
        webhook_verify(**signed(ts=NOW - 2), tolerance_s=1)


@pytest.mark.parametrize(
    "field,value",
    [
        ("timestamp", "12ab"),
        ("timestamp", ""),
        ("timestamp", "-5"),
        ("timestamp", "1" * 13),
        ("timestamp", "\u0661\u0662"),  # Arabic-Indic digits: decimal, not ASCII
        ("signature", ""),
        ("signature", "deadbeef"),
        ("signature", "v1=xyz"),
        ("signature", "v1=" + "A" * 64),
        ("signature", "v2=" + "a" * 64),
        ("signature", " ".join(["v1=" + "a" * 64] * (MAX_SIGNATURES + 1))),
        ("secret", ""),
    ],
)
def test_malformed_headers_are_refused_with_their_own_code(field, value):
    with pytest.raises(WebhookMalformed) as err:
        webhook_verify(**{**signed(), field: value})
    assert err.value.code == "webhook_malformed"
    assert isinstance(err.value, WebhookVerificationError)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"[" * 100_000])
def test_a_signed_body_that_is_not_a_json_object_is_refused(body):
    with pytest.raises(WebhookMalformed):
        webhook_verify(**signed(body=body))


def test_the_wrong_secret_is_a_bad_signature():
    with pytest.raises(WebhookBadSignature) as err:
        webhook_verify(**{**signed(), "secret": "whsec_other"})
    assert err.value.code == "webhook_bad_signature"


@given(body=st.binary(max_size=300), flip=st.integers(min_value=0))
def test_a_tampered_body_is_refused(body, flip):
    good = signed(body=body)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
    else:
        tampered = b"x"
    with pytest.raises(WebhookBadSignature):
        webhook_verify(**{**good, "body": tampered})


@given(delta=st.integers(min_value=-300, max_value=300).filter(bool))
def test_a_changed_timestamp_is_refused_even_within_the_tolerance(delta):
    good = signed()
    with pytest.raises(WebhookBadSignature):
        webhook_verify(**{**good, "timestamp": str(NOW + delta)})


def test_a_timestamp_rewritten_with_a_leading_zero_is_refused():
    with pytest.raises(WebhookBadSignature):
        webhook_verify(**{**signed(), "timestamp": "0" + str(NOW)})


@given(position=st.integers(min_value=0, max_value=63), nibble=st.integers(min_value=1, max_value=15))
def test_a_tampered_signature_is_refused(position, nibble):
    good = signed()
    digest = good["signature"][3:]
    changed = format(int(digest[position], 16) ^ nibble, "x")
    tampered = digest[:position] + changed + digest[position + 1 :]
    with pytest.raises(WebhookBadSignature):
        webhook_verify(**{**good, "signature": f"v1={tampered}"})


@given(
    payload=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=20), max_size=5),
    ts=st.integers(min_value=NOW - 300, max_value=NOW + 300),
    secret=st.text(min_size=1, max_size=40),
)
def test_whatever_the_platform_signs_verifies(payload, ts, secret):
    body = json.dumps(payload).encode()
    header = webhook_signature_header(secrets=[secret], timestamp=ts, body=body)
    assert webhook_verify(secret=secret, body=body, timestamp=str(ts), signature=header, now_s=NOW) == payload
