"""Helpers the routers share: audited writes, paging bounds, the refusals to document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest
from ninja import Schema
from pydantic import Field

from api.auth import key_of
from api.schemas import Error
from api.trail import request_recorded_set
from audit.services import audit_record
from core.errors import LiveOpsError

T = TypeVar("T")

PAGE_DEFAULT = 50
PAGE_MAX = 200
OFFSET_MAX = 1_000_000


class Paging(Schema):
    """``?offset=&limit=`` of a paged list."""

    limit: int = Field(PAGE_DEFAULT, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


# Refusals every authenticated endpoint can answer (documented in the OpenAPI document).
AUTH_ERRORS: dict[int, Any] = {401: Error, 403: Error, 413: Error, 422: Error}


def errors(*statuses: int) -> dict[int, Any]:
    """``response=`` entries for the refusals an endpoint can answer."""
    return {**AUTH_ERRORS, **dict.fromkeys(statuses, Error)}


def _field_of(exc: LiveOpsError) -> dict[str, str]:
    field = exc.extra.get("field")
    return {"field": str(field)} if field else {}


def audited(
    request: HttpRequest, *, action: str, target: str, work: Callable[[], T], detail: dict | None = None
) -> T:
    """Run a write and record it with the key as actor: ``ok`` or the refusal's code."""
    apikey = key_of(request)
    request_recorded_set(request)  # the error handlers record nothing more (api/trail.py)
    try:
        result = work()
    except LiveOpsError as exc:
        audit_record(
            actor=apikey.actor,
            action=action,
            target=target,
            outcome=exc.code,
            detail={**(detail or {}), "error": exc.detail, **_field_of(exc)},
            request=request,
        )
        raise
    audit_record(actor=apikey.actor, action=action, target=target, detail=detail, request=request)
    return result
