"""Thin HTTP views over selectors."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from bosses.models import BossEncounter
from bosses.selectors import boss_get, boss_state
from core.errors import UnknownBoss
from shards.models import Shard


def home(request: HttpRequest) -> HttpResponse:
    """A short index of bosses with links to their pages."""
    return render(request, "home.html", {"bosses": BossEncounter.objects.all()})


def state_api(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET /api/bosses/<slug>/state``: the snapshot as JSON plus the public shard list."""
    try:
        boss = boss_get(slug=slug)
    except UnknownBoss as exc:
        return JsonResponse({"type": "error", "code": exc.code, "detail": str(exc)}, status=404)
    state = boss_state(boss_id=boss.pk)
    if state is not None:
        body = state.as_message()
    else:
        body = {
            "type": "state",
            "boss": boss.slug,
            "hp": boss.final_hp if boss.final_hp is not None else boss.max_hp,
            "max_hp": boss.max_hp,
            "version": boss.final_version or 0,
            "status": boss.status,
            "phase": "",
            "phase_index": 0,
            "ts": None,
        }
    body["name"] = boss.name
    body["shards"] = list(Shard.objects.values("key", "name", "region", "status"))
    return JsonResponse(body)
