"""Thin HTTP views over selectors, and what every page the platform renders carries."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter

from bosses.selectors import boss_get_visible, boss_live_state_by_slug, boss_state, bosses_visible
from bosses.spawn_selectors import ICS_DAYS, boss_next_spawn_at, spawns_upcoming
from core import messages
from core.errors import AuthorityUnavailable, UnknownBoss
from core.ical import CalendarEvent, calendar_text
from core.redaction import redact
from core.redis import REDIS_DOWN
from shards.models import Shard, ShardKind, ShardStatus
from shards.services import DATABASE_DOWN
from transport.permissions import can_watch
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


def sees_drafts(request: HttpRequest) -> bool:
    """Whether this viewer may see draft bosses (an unreleased event): those who may watch
    fights (transport.permissions.can_watch); for anyone else a draft does not exist."""
    return can_watch(getattr(request, "user", None))


def home(request: HttpRequest) -> HttpResponse:
    """A short index of bosses with links to their pages (drafts only for staff who watch)."""
    return render_page(request, "home.html", {"bosses": bosses_visible(drafts=sees_drafts(request))})


def public_shards() -> list[messages.PublicShard]:
    """The shards the public may see: those a player can join (hosted, not retired). A game
    server's shard stays off the public list (docs/security.md, "What is public")."""
    rows = Shard.objects.filter(kind=ShardKind.HOSTED).exclude(status=ShardStatus.RETIRED).order_by("key")
    return list(rows.values("key", "name", "region", "status"))  # type: ignore[arg-type]


# What the state API read from the database last, per process: served with the authority's
# state while the database is unreachable (slug -> (boss id, name); the public shard list).
_known_bosses: dict[str, tuple[int, str]] = {}
_known_shards: list[messages.PublicShard] = []
RETRY_AFTER_S = 1


def state_api(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET /api/bosses/<slug>/state``: the snapshot as JSON plus the public shard list; a
    draft is 404 ``unknown_boss`` unless the viewer may watch fights.

    While the database is unreachable the authority's state is served alone, with the name
    and shards last read (docs/faults.md); 503 ``authority_unavailable`` when Redis is
    unreachable, or when the database is and Redis holds no fight of that boss.
    """
    try:
        boss = boss_get_visible(slug=slug, drafts=sees_drafts(request))
        shards = public_shards()
    except UnknownBoss as exc:
        return JsonResponse(messages.error_body(code=exc.code, detail=str(exc)), status=404)
    except DATABASE_DOWN as exc:
        return _state_api_from_authority(slug, f"the database is unreachable: {exc}")
    _known_bosses[slug] = (boss.pk, boss.name)
    _known_shards[:] = shards  # type: ignore[assignment]  # the four public fields
    try:
        state = boss_state(boss_id=boss.pk)
    except REDIS_DOWN as exc:
        return _unavailable(f"Redis is unreachable: {exc}")
    frame = state.as_message() if state is not None else messages.record_state_frame(record=boss)
    next_spawn = boss_next_spawn_at(boss=boss, now=timezone.now())
    return JsonResponse(
        messages.state_api_body(state=frame, name=boss.name, shards=_known_shards, next_spawn_at=next_spawn)
    )


def _state_api_from_authority(slug: str, why: str) -> JsonResponse:
    """The state API's answer from Redis alone (the database is unreachable)."""
    known = _known_bosses.get(slug)
    try:
        state = boss_state(boss_id=known[0]) if known else boss_live_state_by_slug(slug=slug)
    except REDIS_DOWN as exc:
        return _unavailable(f"{why}; Redis is unreachable too: {exc}")
    if state is None:
        return _unavailable(f"{why}, and the authority holds no fight of boss {slug!r}")
    name = known[1] if known else slug
    return JsonResponse(
        messages.state_api_body(state=state.as_message(), name=name, shards=_known_shards, next_spawn_at=None)
    )


def _unavailable(detail: str) -> JsonResponse:
    err = AuthorityUnavailable(redact(detail)[:300])
    response = JsonResponse(messages.error_body(code=err.code, detail=str(err)), status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def spawns_ics(request: HttpRequest, slug: str) -> HttpResponse:
    """``GET /bosses/<slug>/spawns.ics``: the boss's spawns of the next ICS_DAYS days as an
    iCalendar feed a player subscribes to (docs/liveops.md). Public like the state API: a
    draft answers 404 to anyone who may not watch fights."""
    try:
        boss = boss_get_visible(slug=slug, drafts=sees_drafts(request))
    except UnknownBoss as exc:
        return JsonResponse(messages.error_body(code=exc.code, detail=str(exc)), status=404)
    now = timezone.now()
    play_url = request.build_absolute_uri(reverse("play", kwargs={"slug": boss.slug}))
    events = [
        CalendarEvent(
            uid=f"{s.key}@{boss.slug}",
            start=s.at,
            end=s.ends_at or s.at + timedelta(hours=1),
            summary=f"{boss.name} spawns" + ("" if s.ends_at else " (until defeated)"),
            url=play_url,
        )
        for s in spawns_upcoming(now=now, days=ICS_DAYS, boss=boss)
    ]
    body = calendar_text(name=f"{boss.name}: spawns", events=events, now=now)
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{boss.slug}-spawns.ics"'
    return response
