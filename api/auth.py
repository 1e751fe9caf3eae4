"""``Authorization: Bearer <key>`` with a scope per endpoint."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from api.models import ApiKey, ApiScope
from api.services import apikey_authenticate
from api.trail import request_key_set
from core.errors import Forbidden, FrameTooLarge, Unauthorized

# The largest body an API call may carry (a boss draft is well under 2 KiB).
MAX_BODY_BYTES = 64 * 1024


class ScopedKey(HttpBearer):
    """Authenticates the key, then requires ``scope``: 401 ``unauthorized`` for a missing,
    unknown or revoked key, 403 ``forbidden`` naming the scope the key lacks."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = ApiScope(scope).value

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        header = request.headers.get(self.header, "")
        if not header.strip():
            raise Unauthorized("missing Authorization: Bearer <key>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.openapi_scheme or not token.strip():
            raise Unauthorized("malformed Authorization header (expected Bearer <key>)")
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey:
        """The key (also on ``request.auth``), or a typed refusal."""
        apikey = apikey_authenticate(key=token)
        request_key_set(request, apikey)  # a refusal from here on is audited (api/trail.py)
        if self.scope not in apikey.scope_set:
            raise Forbidden(f"this key lacks the {self.scope!r} scope", scope=self.scope)
        body_size_check(request)
        return apikey


def body_size_check(request: HttpRequest) -> None:
    """413 ``too_large`` for a body over ``MAX_BODY_BYTES``, checked after the key and before
    the body is parsed: on the declared ``Content-Length`` first, then on the bytes actually
    received, so a chunked body (no Content-Length) counts too.
    Django reads at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` + 1 bytes of it (RequestDataTooBig,
    also a 413 here)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise FrameTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    if len(request.body) > MAX_BODY_BYTES:
        raise FrameTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")


READ = ScopedKey(ApiScope.READ)
OPERATE = ScopedKey(ApiScope.OPERATE)
REWARDS = ScopedKey(ApiScope.REWARDS)


def key_of(request: HttpRequest) -> ApiKey:
    """The authenticated key of a request that passed a :class:`ScopedKey`."""
    apikey = getattr(request, "auth", None)
    if not isinstance(apikey, ApiKey):
        raise Unauthorized("not authenticated")
    return apikey
