"""The NinjaAPI of /api/v1/: routers, bearer keys with scopes, JSON refusals, OpenAPI.

django-ninja rather than Django REST framework: request and response bodies are typed
pydantic schemas checked on the way in and out, the OpenAPI document and its docs page come
with it (no extra package), and it is small: plain functions as endpoints over the services.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI

from api.errors import error_response, errors_install
from api.parser import TextCheckedParser
from api.routers import bosses, fights, reward_tables, rewards, shards, spawns, templates, webhooks
from core.errors import MethodNotAllowed, NotFound

API_VERSION = "1"


def _not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(NotFound.code, f"no API route {request.path}", 404)


def _json_405(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """ninja answers a known path with another method by a bare 405: give it the JSON shape."""

    @functools.wraps(view)  # keeps csrf_exempt and the rest of the view's attributes
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and response.get("Content-Type", "").startswith("text/html"):
            allowed = response.get("Allow", "")
            body = error_response(
                MethodNotAllowed.code, f"{request.method} not allowed; allowed: {allowed}", 405
            )
            body["Allow"] = allowed
            return body
        return response

    return wrapped


_not_found.csrf_exempt = True  # type: ignore[attr-defined]


class LiveOpsApi(NinjaAPI):
    """NinjaAPI whose URL patterns answer every refusal in the API's JSON shape."""

    @property
    def urls(self) -> tuple[list[URLResolver | URLPattern], str, str]:
        patterns, app_name, namespace = super().urls
        wrapped: list[URLResolver | URLPattern] = []
        for p in patterns:
            if isinstance(p, URLPattern):
                p.callback = _json_405(p.callback)
            wrapped.append(p)
        # last, so only what no route matched reaches it
        return [*wrapped, re_path(r"^.*$", _not_found)], app_name, namespace


api = LiveOpsApi(
    title="World Boss live-ops: game backend API",
    version=API_VERSION,
    description=(
        "Drive fights and collect results from a game backend. Every call needs "
        "`Authorization: Bearer <key>` with the scope the endpoint names (read, operate, "
        'rewards); every refusal is `{"error": {"code", "detail", "field"?}}` '
        "(docs/api.md)."
    ),
    urls_namespace="api-v1",
    parser=TextCheckedParser(),
)
errors_install(api)
api.add_router("", bosses.router)
api.add_router("", fights.router)
api.add_router("", rewards.router)
api.add_router("", templates.router)
api.add_router("", spawns.router)
api.add_router("", shards.router)
api.add_router("", webhooks.router)
api.add_router("", reward_tables.router)
