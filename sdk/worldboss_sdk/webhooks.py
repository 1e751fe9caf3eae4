"""Signed webhooks: the signing scheme and its verifier for a game's backend (docs/webhooks.md).

The platform POSTs a JSON body with these headers::

    Webhook-Id:        the delivery's idempotency key (the same on every attempt: dedupe on it)
    Webhook-Timestamp: unix seconds of this attempt
    Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body bytes>")> [v1=<...> ...]
    Webhook-Event:     the event name (boss.defeated, ...)

Several ``v1=`` values (space- or comma-separated) are sent while an endpoint's secret is
being rotated: one per secret still valid. :func:`webhook_verify` accepts the body when any
of them matches the receiver's secret, comparing in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable
from typing import Any

SIGNATURE_VERSION = "v1"
HEADER_ID = "Webhook-Id"
HEADER_TIMESTAMP = "Webhook-Timestamp"
HEADER_SIGNATURE = "Webhook-Signature"
HEADER_EVENT = "Webhook-Event"
DEFAULT_TOLERANCE_S = 300
# A signature header carries one value per valid secret (two during a rotation); a longer
# one is refused before any HMAC is computed.
MAX_SIGNATURES = 8
MAX_TIMESTAMP_DIGITS = 12
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_SEPARATORS = re.compile(r"[\s,]+")


class WebhookVerificationError(ValueError):
    """A webhook was refused; ``code`` says why (stable), ``str(err)`` is for humans."""

    code = "webhook_invalid"


class WebhookMalformed(WebhookVerificationError):
    """A header or the body is not in the expected form."""

    code = "webhook_malformed"


class WebhookStale(WebhookVerificationError):
    """The timestamp is further from now than the tolerance (a replay, or a skewed clock)."""

    code = "webhook_stale"


class WebhookBadSignature(WebhookVerificationError):
    """No signature matches the secret over this timestamp and body (tampered, or wrong secret)."""

    code = "webhook_bad_signature"


def _key(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or not secret:
        raise WebhookMalformed("the secret must be non-empty bytes or str")
    return secret


def webhook_sign(*, secret: bytes | str, timestamp: int | str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret`` (one ``v1`` value)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def webhook_signature_header(*, secrets: Iterable[bytes | str], timestamp: int | str, body: bytes) -> str:
    """The ``Webhook-Signature`` value: one ``v1=<hex>`` per secret, space-separated."""
    return " ".join(
        f"{SIGNATURE_VERSION}={webhook_sign(secret=s, timestamp=timestamp, body=body)}" for s in secrets
    )


def _timestamp_parse(timestamp: str) -> tuple[int, str]:
    if not isinstance(timestamp, str):
        raise WebhookMalformed(f"{HEADER_TIMESTAMP} must be a string of unix seconds")
    value = timestamp.strip()
    # isdecimal() alone admits other scripts' digits; the ASCII check keeps int() safe.
    if not value.isascii() or not value.isdecimal() or len(value) > MAX_TIMESTAMP_DIGITS:
        raise WebhookMalformed(f"{HEADER_TIMESTAMP} is not unix seconds: {timestamp[:40]!r}")
    return int(value), value


def _signatures_parse(signature: str) -> list[str]:
    if not isinstance(signature, str):
        raise WebhookMalformed(f"{HEADER_SIGNATURE} must be a string")
    items = [item for item in _SEPARATORS.split(signature.strip()) if item]
    if not items or len(items) > MAX_SIGNATURES:
        raise WebhookMalformed(f"{HEADER_SIGNATURE} must hold 1 to {MAX_SIGNATURES} values")
    found = []
    for item in items:
        version, sep, value = item.partition("=")
        if not sep:
            raise WebhookMalformed(f"{HEADER_SIGNATURE} value {item[:20]!r} is not <version>=<hex>")
        if version != SIGNATURE_VERSION:
            continue  # a later scheme's value, sent next to v1: not ours to check
        if not _HEX_SHA256.fullmatch(value):
            raise WebhookMalformed(f"{HEADER_SIGNATURE} has a v1 value that is not 64 lowercase hex digits")
        found.append(value)
    if not found:
        raise WebhookMalformed(f"{HEADER_SIGNATURE} has no {SIGNATURE_VERSION}= value")
    return found


def webhook_verify(
    *,
    secret: bytes | str,
    body: bytes,
    timestamp: str,
    signature: str,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now_s: float | None = None,
) -> dict[str, Any]:
    """Check a webhook's signature and freshness; return its parsed JSON body.

    ``body`` is the raw request body (the bytes, before any JSON parsing), ``timestamp`` and
    ``signature`` the ``Webhook-Timestamp`` and ``Webhook-Signature`` headers. Raises
    :class:`WebhookMalformed`, :class:`WebhookStale` (more than ``tolerance_s`` from
    ``now_s``, default the current time) or :class:`WebhookBadSignature`. Every ``v1=`` value
    is compared in constant time. After this, dedupe on ``Webhook-Id``: a delivery may come
    more than once.
    """
    if not isinstance(body, bytes | bytearray):
        raise WebhookMalformed("the body must be the raw request bytes")
    key = _key(secret)
    sent_at, signed_timestamp = _timestamp_parse(timestamp)
    candidates = _signatures_parse(signature)
    now = time.time() if now_s is None else now_s
    if abs(now - sent_at) > tolerance_s:
        raise WebhookStale(
            f"{HEADER_TIMESTAMP} {sent_at} is {abs(now - sent_at):.0f} s from now (tolerance {tolerance_s} s)"
        )
    # the header's text as sent is what was signed (not a re-rendering of its number)
    expected = webhook_sign(secret=key, timestamp=signed_timestamp, body=bytes(body))
    matched = False
    for candidate in candidates:  # no early exit: every value costs the same
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookBadSignature("no signature matches this body and timestamp under the secret")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WebhookMalformed(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WebhookMalformed("the body is not a JSON object")
    return data
