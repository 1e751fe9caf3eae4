"""Recording the audit trail (docs/security.md, "Roles and the audit trail")."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from audit.models import AuditEntry
from core.text import json_text_clean, text_clean


def audit_actor_of(request: HttpRequest) -> str:
    """The actor name of a signed-in request's user (``user:<username>``; ``anonymous`` without one)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return "anonymous"
    return f"user:{user.get_username()}"


def audit_record(
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditEntry:
    """Write one audit entry; with ``request``, its user and client address are recorded too.

    Callers record refusals as well as successes (``outcome`` = the error code), so the trail
    shows attempts by a role that was not allowed. Secrets (tokens, keys) never go in ``detail``.
    """
    user = None
    address = None
    if request is not None:
        candidate = getattr(request, "user", None)
        if candidate is not None and candidate.is_authenticated:
            user = candidate
        address = request.META.get("REMOTE_ADDR") or None
    # a refused input may hold text no database stores (a NUL): recorded as U+FFFD
    return AuditEntry.objects.create(
        actor=text_clean(actor[:120]),
        user=user,
        action=action[:64],
        target=text_clean(target[:200]),
        outcome=outcome[:64],
        detail=json_text_clean(detail or {}),
        address=address,
    )


def audit_record_request(
    *,
    request: HttpRequest,
    action: str,
    target: str,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """:func:`audit_record` for a signed-in user's request (admin actions, the ops dashboard)."""
    return audit_record(
        actor=audit_actor_of(request),
        action=action,
        target=target,
        outcome=outcome,
        detail=detail,
        request=request,
    )
