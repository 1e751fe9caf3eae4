"""Every refusal of the API as ``{"error": {"code", "detail", "field"?}}`` with a stable code.

The platform's typed errors (core/errors.py) carry the code; the HTTP status comes from the
error's class here. Ninja's own refusals (validation, unparsable bodies, auth) and Django's
(oversized bodies, unknown routes, wrong methods) are mapped onto the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from api.trail import write_refusal_record
from core.errors import (
    AlreadyClaimed,
    AuthorityUnavailable,
    Forbidden,
    FrameTooLarge,
    InvalidInput,
    InvalidTransition,
    LiveOpsError,
    MalformedFrame,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UnknownBoss,
)

logger = logging.getLogger(__name__)

# Most specific first: FrameTooLarge and MalformedFrame are InvalidInput too.
STATUS_OF: tuple[tuple[type[LiveOpsError], int], ...] = (
    (FrameTooLarge, 413),
    (MalformedFrame, 400),
    (InvalidInput, 422),
    (Unauthorized, 401),
    (Forbidden, 403),
    (UnknownBoss, 404),
    (NotFound, 404),
    (MethodNotAllowed, 405),
    (InvalidTransition, 409),
    (AlreadyClaimed, 409),
    (AuthorityUnavailable, 503),
)
# ninja's HttpError statuses that have no typed error of their own.
CODE_OF_HTTP_STATUS = {
    400: MalformedFrame.code,
    401: Unauthorized.code,
    403: Forbidden.code,
    404: NotFound.code,
    405: MethodNotAllowed.code,
    413: FrameTooLarge.code,
}


def error_body(code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of a refusal."""
    error: dict[str, Any] = {"code": code, "detail": detail}
    if field:
        error["field"] = field
    return {"error": error}


def error_response(code: str, detail: str, status: int, field: str | None = None) -> JsonResponse:
    """A refusal as a response."""
    return JsonResponse(error_body(code, detail, field), status=status)


def refused(
    request: HttpRequest, code: str, detail: str, status: int, field: str | None = None
) -> JsonResponse:
    """A refusal of an API call as a response, recorded in the audit trail when the call is a
    write by an authenticated key that its endpoint did not record (api/trail.py)."""
    write_refusal_record(request, code=code, detail=detail, field=field)
    return error_response(code, detail, status, field)


def status_of(exc: LiveOpsError) -> int:
    """The HTTP status of a typed error (400 for one this table does not name)."""
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


def _liveops(request: HttpRequest, exc: LiveOpsError) -> HttpResponse:
    field = exc.extra.get("field")
    response = refused(request, exc.code, exc.detail, status_of(exc), str(field) if field else None)
    if isinstance(exc, Unauthorized):
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    # loc is ("body", "payload", "max_hp") or ("query", "limit"): the field is what follows
    # the parameter's own name
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "payload")]
    field = ".".join(loc) or None
    detail = first.get("msg", "invalid input")
    if field:
        detail = f"{field}: {detail}"
    return refused(request, InvalidInput.code, detail, 422, field)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, AuthenticationError):
        return _liveops(request, Unauthorized("missing or malformed Authorization: Bearer <key>"))
    if isinstance(exc.__cause__, LiveOpsError):  # the body parser's own refusal (api/parser.py)
        return _liveops(request, exc.__cause__)
    code = CODE_OF_HTTP_STATUS.get(exc.status_code, "error")
    detail = str(exc.message)
    if exc.status_code == 400 and detail.startswith("Cannot parse request body"):
        detail = "the body is not valid JSON"
    return refused(request, code, detail, exc.status_code)


def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return refused(request, FrameTooLarge.code, "the request body is too large", 413)


def _http404(request: HttpRequest, exc: Http404) -> HttpResponse:
    return refused(request, NotFound.code, str(exc) or "not found", 404)


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API call %s %s failed", request.method, request.path)
    try:
        return refused(request, "error", "internal error", 500)
    except Exception:  # the trail's database may be what failed: the 500 is answered anyway
        logger.exception("recording the failed API call %s %s failed", request.method, request.path)
        return error_response("error", "internal error", 500)


def errors_install(api: NinjaAPI) -> None:
    """Register the handlers on ``api`` (they replace ninja's defaults)."""
    api.add_exception_handler(LiveOpsError, _liveops)
    api.add_exception_handler(ValidationError, _validation)
    api.add_exception_handler(HttpError, _http_error)
    api.add_exception_handler(RequestDataTooBig, _too_big)
    api.add_exception_handler(Http404, _http404)
    api.add_exception_handler(Exception, _unexpected)
