"""Writes of the backend API's own: API keys (issue, revoke, authenticate).

The endpoints' writes of the domain (boss configuration and lifecycle, reward claims) are the
bosses app's services (bosses/services.py), as the admin's are."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from api.models import ApiKey, ApiScope
from audit.services import audit_record
from core.errors import InvalidInput, Unauthorized

# A key is "wbk_" + the public prefix + "_" + the secret: 32 random bytes, URL-safe base64.
KEY_MARK = "wbk_"
PREFIX_CHARS = 8
TOKEN_BYTES = 32
# last_used_at is written at most this often per key: a busy key must not write on every call.
LAST_USED_EVERY_S = 60


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def apikey_scopes_parse(*, scopes: Iterable[str] | str) -> str:
    """Validated, sorted, comma-separated scopes; :class:`InvalidInput` on an unknown or empty set."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    wanted = {s.strip() for s in items if s.strip()}
    unknown = wanted - set(ApiScope.values)
    if unknown:
        raise InvalidInput(
            f"unknown scope(s) {', '.join(sorted(unknown))}; choose from {', '.join(ApiScope.values)}",
            field="scopes",
        )
    if not wanted:
        raise InvalidInput("a key needs at least one scope", field="scopes")
    return ",".join(sorted(wanted))


def apikey_issue(*, apikey: ApiKey) -> str:
    """Give an unsaved or existing key a fresh secret (prefix and hash); returns the key, once."""
    for _ in range(5):
        prefix = secrets.token_hex(PREFIX_CHARS // 2)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    token = secrets.token_urlsafe(TOKEN_BYTES)
    apikey.prefix = prefix
    apikey.key_hash = _hash(token)
    return f"{KEY_MARK}{prefix}_{token}"


def apikey_create(
    *, name: str, scopes: Iterable[str] | str, actor: str = "system", request: Any = None
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret (shown once, never stored). Audited."""
    if not name.strip():
        raise InvalidInput("a key needs a name", field="name")
    apikey = ApiKey(name=name.strip()[:120], scopes=apikey_scopes_parse(scopes=scopes))
    key = apikey_issue(apikey=apikey)
    apikey.save()
    audit_record(
        actor=actor,
        action="apikey.create",
        target=f"apikey/{apikey.prefix}",
        detail={"name": apikey.name, "scopes": apikey.scopes},
        request=request,
    )
    return apikey, key


def apikey_revoke(*, apikey: ApiKey, actor: str = "system", request: Any = None) -> ApiKey:
    """Revoke a key (idempotent): every later call with it gets 401. Audited."""
    if apikey.revoked_at is None:
        apikey.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=apikey.pk, revoked_at__isnull=True).update(revoked_at=apikey.revoked_at)
        audit_record(actor=actor, action="apikey.revoke", target=f"apikey/{apikey.prefix}", request=request)
    return apikey


def apikey_authenticate(*, key: str, now: datetime | None = None) -> ApiKey:
    """The live key behind ``key`` or :class:`Unauthorized` (unknown, malformed or revoked).

    The row is found by its public prefix; the secret's hash is compared in constant time.
    """
    mark, _, rest = key.partition("_")
    prefix, _, token = rest.partition("_")
    if f"{mark}_" != KEY_MARK or len(prefix) != PREFIX_CHARS or not token:
        raise Unauthorized("malformed API key (expected wbk_<prefix>_<secret>)")
    apikey = ApiKey.objects.filter(prefix=prefix).first()
    # Hash and compare even for an unknown prefix, so timing tells nothing about prefixes.
    expected = apikey.key_hash if apikey is not None else "0" * 64
    if not hmac.compare_digest(_hash(token), expected) or apikey is None:
        raise Unauthorized("unknown API key")
    if apikey.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    now = now or timezone.now()
    if apikey.last_used_at is None or now - apikey.last_used_at > timedelta(seconds=LAST_USED_EVERY_S):
        apikey.last_used_at = now
        ApiKey.objects.filter(pk=apikey.pk).update(last_used_at=now)
    return apikey
