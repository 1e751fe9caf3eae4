"""Who may watch and who may run a fight, which pages may open a cookie-authenticated socket,
and the guest identity of the player page (docs/security.md, "Player identity").

Staff is not a role (docs/dashboard.md): the operator pages and sockets need the model
permission ``bosses.view_bossencounter`` (or ``bosses.operate_boss``), and every action that
changes a fight needs ``bosses.operate_boss``, the permission the admin's lifecycle actions
check too. Superusers have every permission.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.core import signing

OPERATE_BOSS = "bosses.operate_boss"
WATCH_BOSS = "bosses.view_bossencounter"
MANAGE_SHARD = "shards.manage_shard"


def _staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def can_watch(user: Any) -> bool:
    """An active staff account allowed to see the operator pages and feeds (queries the DB)."""
    return _staff(user) and (user.has_perm(WATCH_BOSS) or user.has_perm(OPERATE_BOSS))


def can_operate(user: Any) -> bool:
    """An active staff account allowed to go live, pause, resume, end and reset a fight."""
    return _staff(user) and user.has_perm(OPERATE_BOSS)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1").strip()
    return None


def origin_problem(scope: dict) -> str | None:
    """Why a WebSocket that authenticates by cookie must be refused for its ``Origin``, or None.

    A browser always sends ``Origin`` on a WebSocket handshake, and a page of another site can
    open a socket to us carrying our session cookie (cross-site WebSocket hijacking). Allowed:
    the same origin as the ``Host`` the client asked for, an origin in
    ``CSRF_TRUSTED_ORIGINS``, or a host in ``ALLOWED_HOSTS`` (matched as Channels'
    ``AllowedHostsOriginValidator`` does; ``*`` does not count here). No ``Origin`` at all is not
    a browser (an SDK, a load generator): nothing to hijack, allowed.
    """
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    parsed = urlsplit(origin)
    host = _header(scope, b"host")
    if parsed.hostname and host and parsed.netloc.lower() == host.lower():
        return None
    if origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in settings.CSRF_TRUSTED_ORIGINS}:
        return None
    hosts = [h for h in settings.ALLOWED_HOSTS if h != "*"]
    if parsed.hostname and OriginValidator(None, hosts).validate_origin(parsed):
        return None
    return f"origin {origin[:100]!r} may not open this socket (not this site, ALLOWED_HOSTS or CSRF_TRUSTED_ORIGINS)"


GUEST_PREFIX = "guest:"
GUEST_ID_RE = re.compile(r"^guest:[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16): 128 bits


def guest_id_new() -> str:
    """A fresh guest id: opaque, random (128 bits), never a session key or anything stored."""
    return GUEST_PREFIX + secrets.token_urlsafe(16)


def _guest_signer() -> signing.TimestampSigner:
    # SECRET_KEY (and SECRET_KEY_FALLBACKS) with a salt of its own: a guest cookie is no
    # other signed value of the site; timestamped, so GUEST_COOKIE_MAX_AGE_S holds
    return signing.TimestampSigner(salt=f"{settings.GUEST_COOKIE_NAME}:{settings.GUEST_COOKIE_SALT}")


def guest_id_from_cookie(value: str | None) -> str | None:
    """The guest id inside a guest cookie the player page signed, or None: absent, tampered
    with, older than ``GUEST_COOKIE_MAX_AGE_S`` or not a guest id."""
    if not value:
        return None
    try:
        guest = _guest_signer().unsign(value, max_age=settings.GUEST_COOKIE_MAX_AGE_S)
    except signing.BadSignature:  # SignatureExpired too
        return None
    return guest if GUEST_ID_RE.match(guest) else None


def guest_cookie_set(response: Any, *, guest_id: str) -> None:
    """Give the browser its guest id: signed (the gateway checks it), HttpOnly (no script
    reads it), SameSite=Lax, Secure in production (``GUEST_COOKIE_SECURE``)."""
    response.set_cookie(
        settings.GUEST_COOKIE_NAME,
        _guest_signer().sign(guest_id),
        max_age=settings.GUEST_COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="Lax",
        secure=settings.GUEST_COOKIE_SECURE,
    )
