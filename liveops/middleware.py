"""Middleware of every HTTP request (settings.MIDDLEWARE)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from api.errors import error_response
from core.errors import MalformedFrame
from core.text import text_problem, url_text_problem

API_PREFIX = "/api/"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _form_fields(request: HttpRequest) -> Iterator[tuple[str, str]]:
    """A page's or the admin's form fields (the API reads JSON: api.parser checks it)."""
    if request.method != "POST" or request.content_type not in FORM_TYPES:
        return
    if request.path.startswith(API_PREFIX):
        return
    try:
        form = request.POST
    except Exception:  # an unreadable or oversized form: the view answers it as before
        return
    for key, values in form.lists():
        for value in values:
            yield key, value


def request_text_refusal(request: HttpRequest) -> HttpResponse | None:
    """400 ``malformed`` for a path, query string or form carrying text no database can
    store (NUL, a lone surrogate; control characters in the URL): core.text."""
    if problem := url_text_problem(request.path):
        return error_response(MalformedFrame.code, f"the path {problem}", 400)
    for key, values in request.GET.lists():
        for text in (key, *values):
            if problem := url_text_problem(text):
                return error_response(MalformedFrame.code, f"query parameter {key!r} {problem}", 400, key)
    for key, value in _form_fields(request):
        for text in (key, value):
            if problem := text_problem(text):
                return error_response(MalformedFrame.code, f"form field {key!r} {problem}", 400, key)
    return None


class TextGuardMiddleware:
    """Refuses, before any view or the admin runs, a request whose URL or form holds text
    that would fail in the database (NUL on PostgreSQL): 400 ``malformed``, never a 500."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self._acall(request)
        return request_text_refusal(request) or self.get_response(request)  # type: ignore[return-value]

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        refusal = request_text_refusal(request)
        if refusal is not None:
            return refusal
        return await self.get_response(request)  # type: ignore[misc]


# The pages' scripts are the platform's own files plus one inline module per page, carrying
# the request's nonce; styles may be inline (style attributes in templates and in the markup
# the pages' JS builds: no script runs from a style). Sockets and fetches go to this origin
# ('self' covers ws:/wss: of it). Nothing may frame a page (X-Frame-Options says so too).
CSP_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self' 'nonce-{nonce}'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)


def content_security_policy(nonce: str) -> str:
    """The ``Content-Security-Policy`` of a response whose inline scripts carry ``nonce``."""
    return "; ".join(CSP_DIRECTIVES).format(nonce=nonce)


class ContentSecurityPolicyMiddleware:
    """A fresh nonce per request (``request.csp_nonce``: templates put it on their inline
    ``<script>``) and the policy on every response (docs/security.md, "Pages")."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self._acall(request)
        nonce = _nonce_set(request)
        response: HttpResponse = self.get_response(request)  # type: ignore[assignment]
        return _policy_set(response, nonce)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        nonce = _nonce_set(request)
        response = await self.get_response(request)  # type: ignore[misc]
        return _policy_set(response, nonce)


def _nonce_set(request: HttpRequest) -> str:
    nonce = secrets.token_urlsafe(18)
    request.csp_nonce = nonce  # type: ignore[attr-defined]
    return nonce


def _policy_set(response: HttpResponse, nonce: str) -> HttpResponse:
    response.setdefault("Content-Security-Policy", content_security_policy(nonce))
    return response
