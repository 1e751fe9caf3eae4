"""/bosses: list, read, create and edit (what a boss may change: bosses/rules.py), schedule, and
the fight's lifecycle. Every write is a bosses service, as in the admin."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router

from api import auth
from api.routers.common import Paging, audited, errors
from api.schemas import BossCreate, BossOut, BossPage, BossPatch, Schedule
from bosses import services
from bosses.models import BossEncounter, BossStatus
from bosses.selectors import boss_get, boss_state
from bosses.spawn_selectors import boss_next_spawn_at
from core import messages

router = Router(tags=["bosses"])


def boss_out(boss: BossEncounter, *, with_live: bool = True) -> dict[str, Any]:
    """The API's view of a boss (with its authority's state unless it is a draft)."""
    out = {
        f: getattr(boss, f) for f in BossOut.model_fields if f not in ("live", "template", "next_spawn_at")
    }
    out["template"] = boss.template.slug if boss.template_id and boss.template else None
    out["next_spawn_at"] = boss_next_spawn_at(boss=boss, now=timezone.now())
    out["live"] = None
    if with_live and boss.status != BossStatus.DRAFT:
        state = boss_state(boss_id=boss.pk)
        if state is not None:
            out["live"] = messages.api_live_state(state=state.as_message())
    return out


@router.get("/bosses", response={200: BossPage, **errors()}, auth=auth.READ, summary="List bosses")
def bosses_list(request: HttpRequest, paging: Query[Paging]) -> dict[str, Any]:
    """Every boss by slug, one page at a time (the live state is read per boss on the page)."""
    rows = BossEncounter.objects.order_by("slug")
    page = rows[paging.offset : paging.offset + paging.limit]
    return {
        "count": rows.count(),
        "offset": paging.offset,
        "limit": paging.limit,
        "items": [boss_out(b) for b in page],
    }


@router.get("/bosses/{slug}", response={200: BossOut, **errors(404)}, auth=auth.READ, summary="Read a boss")
def bosses_read(request: HttpRequest, slug: str) -> dict[str, Any]:
    """One boss's configuration, status and live state."""
    return boss_out(boss_get(slug=slug))


@router.post(
    "/bosses", response={201: BossOut, **errors(400)}, auth=auth.OPERATE, summary="Create a draft boss"
)
def bosses_create(request: HttpRequest, payload: BossCreate) -> tuple[int, dict[str, Any]]:
    """A new draft: the model's validation and the cross-field checks (phases, damage range,
    schedule, heartbeats); nothing is written on a refusal."""
    fields = payload.model_dump(exclude_unset=True)
    boss = audited(
        request,
        action="boss.create",
        target=f"boss/{payload.slug}",
        work=lambda: services.boss_create(fields=fields),
    )
    return 201, boss_out(boss, with_live=False)


@router.patch(
    "/bosses/{slug}",
    response={200: BossOut, **errors(400, 404, 409)},
    auth=auth.OPERATE,
    summary="Edit a boss",
)
def bosses_update(request: HttpRequest, slug: str, payload: BossPatch) -> dict[str, Any]:
    """Change a boss's fields as far as its status allows: any field of a draft; of a live or
    paused fight all but ``slug``, ``max_hp``, ``phases``, ``tick_interval_ms`` and
    ``starts_at`` (the authority depends on them); of an ended fight only ``name``. Another
    change is 409 ``invalid_transition`` naming the field; nothing is written then."""
    fields = payload.model_dump(exclude_unset=True)
    boss = audited(
        request,
        action="boss.update",
        target=f"boss/{slug}",
        work=lambda: services.boss_update(boss_id=boss_get(slug=slug).pk, fields=fields),
        detail={"fields": sorted(fields)},
    )
    return boss_out(boss)


@router.put(
    "/bosses/{slug}/schedule",
    response={200: BossOut, **errors(400, 404, 409)},
    auth=auth.OPERATE,
    summary="Schedule a boss",
)
def bosses_schedule(request: HttpRequest, slug: str, payload: Schedule) -> dict[str, Any]:
    """Set ``starts_at`` (a draft goes live then) and ``ends_at`` (the fight expires then);
    the beat applies schedules every second. ``starts_at`` changes only on a draft, ``ends_at``
    also while the fight runs; an ended fight keeps its schedule (409 ``invalid_transition``)."""
    boss = boss_get(slug=slug)
    boss = audited(
        request,
        action="boss.schedule",
        target=f"boss/{slug}",
        work=lambda: services.boss_schedule_set(
            boss_id=boss.pk, starts_at=payload.starts_at, ends_at=payload.ends_at
        ),
        detail={
            "starts_at": payload.starts_at.isoformat() if payload.starts_at else None,
            "ends_at": payload.ends_at.isoformat() if payload.ends_at else None,
        },
    )
    return boss_out(boss)


def _lifecycle(request: HttpRequest, slug: str, verb: str, service: Any) -> dict[str, Any]:
    boss = boss_get(slug=slug)
    audited(request, action=f"boss.{verb}", target=f"boss/{slug}", work=lambda: service(boss=boss))
    boss.refresh_from_db()
    return boss_out(boss)


LIFECYCLE_ERRORS = errors(400, 404, 409, 503)


@router.post("/bosses/{slug}/go-live", response={200: BossOut, **LIFECYCLE_ERRORS}, auth=auth.OPERATE)
def bosses_go_live(request: HttpRequest, slug: str) -> dict[str, Any]:
    """Draft -> live: seed the authority and start ticking."""
    return _lifecycle(request, slug, "go_live", services.boss_go_live)


@router.post("/bosses/{slug}/pause", response={200: BossOut, **LIFECYCLE_ERRORS}, auth=auth.OPERATE)
def bosses_pause(request: HttpRequest, slug: str) -> dict[str, Any]:
    """Live -> paused: HP freezes, damage is refused."""
    return _lifecycle(request, slug, "pause", services.boss_pause)


@router.post("/bosses/{slug}/resume", response={200: BossOut, **LIFECYCLE_ERRORS}, auth=auth.OPERATE)
def bosses_resume(request: HttpRequest, slug: str) -> dict[str, Any]:
    """Paused -> live."""
    return _lifecycle(request, slug, "resume", services.boss_resume)


@router.post("/bosses/{slug}/end", response={200: BossOut, **LIFECYCLE_ERRORS}, auth=auth.OPERATE)
def bosses_end(request: HttpRequest, slug: str) -> dict[str, Any]:
    """Live or paused -> expired: the fight ends undefeated."""
    return _lifecycle(request, slug, "end", services.boss_end)
