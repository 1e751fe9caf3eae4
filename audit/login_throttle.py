"""Admin login throttling: a few failed logins per username and address, then a pause.

Counted in Redis (the authority's server, keys in core/keys.py), so every ASGI process
shares the count: ``MAX_FAILURES`` failed logins of one username from one address within
``WINDOW_S`` lock that pair out until the window ends (the count starts at the first failure,
so a lock lasts at most ``WINDOW_S``); ``MAX_ADDRESS_FAILURES`` from one address, whatever
the usernames, lock that address out (a password spray). A success clears its pair's count.
The admin's login form refuses a locked pair before checking the password, with its own
message; the first failure that locks a pair is written to the audit trail
(``auth.login_throttled``). If Redis is unreachable the login is not throttled (a warning is
logged): staff must be able to sign in during an outage (docs/security.md).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest

from audit.services import audit_record
from core import keys
from core.errors import RateLimited
from core.redis import REDIS_DOWN, get_redis

logger = logging.getLogger(__name__)

MAX_FAILURES = 5
MAX_ADDRESS_FAILURES = 50
WINDOW_S = 15 * 60


def _address(request: HttpRequest | None) -> str:
    return (request.META.get("REMOTE_ADDR") or "") if request is not None else ""


def login_throttle_wait(*, username: str, address: str) -> int:
    """Seconds until ``username`` may try again from ``address`` (0: now)."""
    r = get_redis()
    wait = 0
    for key, limit in (
        (keys.login_failures_key(username=username, address=address), MAX_FAILURES),
        (keys.login_address_failures_key(address=address), MAX_ADDRESS_FAILURES),
    ):
        count = r.get(key)
        if count is not None and int(count) >= limit:
            wait = max(wait, int(r.ttl(key)), 1)
    return wait


def login_failure_record(*, username: str, address: str) -> int:
    """Count one failed login; the pair's count after it."""
    r = get_redis()
    counts = []
    for key in (
        keys.login_failures_key(username=username, address=address),
        keys.login_address_failures_key(address=address),
    ):
        r.set(key, 0, ex=WINDOW_S, nx=True)  # the window starts at the first failure
        counts.append(int(r.incr(key)))
    return counts[0]


def login_failures_clear(*, username: str, address: str) -> None:
    """A successful login: its pair starts again from zero (the address count stays)."""
    get_redis().delete(keys.login_failures_key(username=username, address=address))


@receiver(user_login_failed, dispatch_uid="audit.login_throttle.failed")
def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any
) -> None:
    username = str(credentials.get("username") or "")
    address = _address(request)
    try:
        count = login_failure_record(username=username, address=address)
    except REDIS_DOWN as exc:
        logger.warning("login throttle: Redis is unreachable, failure not counted: %s", exc)
        return
    if count == MAX_FAILURES:
        audit_record(
            actor="anonymous",
            action="auth.login_throttled",
            target=f"user/{username[:64]}",
            outcome=RateLimited.code,
            detail={"failures": count, "window_s": WINDOW_S},
            request=request,
        )


@receiver(user_logged_in, dispatch_uid="audit.login_throttle.logged_in")
def _on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kw: Any) -> None:
    try:
        login_failures_clear(username=user.get_username(), address=_address(request))
    except REDIS_DOWN as exc:
        logger.warning("login throttle: Redis is unreachable, count not cleared: %s", exc)


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, refusing a locked username and address before the password
    is checked (``admin.site.login_form``, set in liveops/urls.py)."""

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        try:
            wait = login_throttle_wait(username=username, address=_address(self.request))
        except REDIS_DOWN as exc:
            logger.warning("login throttle: Redis is unreachable, login not throttled: %s", exc)
            wait = 0
        if wait:
            minutes = max(1, round(wait / 60))
            raise ValidationError(
                "Too many failed logins for this account from your address: try again in "
                f"about {minutes} minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            )
        return super().clean()
