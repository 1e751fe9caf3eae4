"""Thin HTTP views over selectors, and what every page the platform renders carries."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.debug import SafeExceptionReporterFilter

from bosses.models import BossEncounter
from bosses.selectors import boss_get, boss_state
from core import messages
from core.errors import UnknownBoss
from core.redaction import redact
from shards.models import Shard
from worldboss_sdk.protocol import as_dict as protocol_as_dict


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter (hides settings named like keys, tokens, passwords) plus the password
    inside any string value, e.g. ``REDIS_URL=redis://:s3cret@host`` (``DEFAULT_EXCEPTION_REPORTER_FILTER``)."""

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        return redact(value) if isinstance(value, str) else value


def protocol_constants(request: HttpRequest | None = None) -> dict[str, object]:
    """The protocol's constants for a page: ``{"protocol": worldboss_sdk.protocol.as_dict()}``.

    ``base.html`` renders them as ``{{ protocol|json_script:"protocol" }}`` and the page's
    JS reads every close code, error code and status from there (static/js/protocol.js),
    so the browser carries no copy of a code. It has a context processor's signature.
    """
    return {"protocol": protocol_as_dict()}


def render_page(
    request: HttpRequest, template: str, context: dict[str, object] | None = None, *, status: int = 200
) -> HttpResponse:
    """``render`` with the protocol's constants added: how every page of the platform is rendered."""
    return render(request, template, {**protocol_constants(request), **(context or {})}, status=status)


def home(request: HttpRequest) -> HttpResponse:
    """A short index of bosses with links to their pages."""
    return render_page(request, "home.html", {"bosses": BossEncounter.objects.all()})


def state_api(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET /api/bosses/<slug>/state``: the snapshot as JSON plus the public shard list."""
    try:
        boss = boss_get(slug=slug)
    except UnknownBoss as exc:
        return JsonResponse(messages.error_body(code=exc.code, detail=str(exc)), status=404)
    state = boss_state(boss_id=boss.pk)
    frame = state.as_message() if state is not None else messages.record_state_frame(record=boss)
    body = messages.state_api_body(
        state=frame, name=boss.name, shards=list(Shard.objects.values("key", "name", "region", "status"))
    )
    return JsonResponse(body)
