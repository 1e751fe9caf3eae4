"""Recurring spawns (docs/liveops.md): the next spawns of every boss or of one, a boss's
schedules, their occurrences. Every write is a bosses service, as in the admin."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from pydantic import Field

from api import auth
from api.routers.common import Paging, audited, errors
from api.schemas import (
    OccurrencePage,
    ScheduleCreate,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
    UpcomingSpawns,
)
from bosses import services
from bosses.models import SpawnSchedule
from bosses.selectors import boss_get, template_get
from bosses.spawn_selectors import CALENDAR_DAYS, UpcomingSpawn, schedule_recurrence, spawns_upcoming
from core.errors import NotFound

router = Router(tags=["spawns"])

DAYS_MAX = 400


class Days(Schema):
    days: int = Field(CALENDAR_DAYS, ge=1, le=DAYS_MAX)


def _spawn_out(spawn: UpcomingSpawn) -> dict[str, Any]:
    return {
        "boss": spawn.boss,
        "schedule": spawn.schedule_id,
        "timezone": spawn.timezone,
        "at": spawn.at,
        "ends_at": spawn.ends_at,
    }


def schedule_out(schedule: SpawnSchedule) -> dict[str, Any]:
    """The API's view of a schedule, with its next spawn."""
    return {
        "id": schedule.pk,
        "boss": schedule.boss.slug,
        "name": schedule.name,
        "template": schedule.template.slug if schedule.template_id and schedule.template else None,
        "timezone": schedule.timezone,
        "rule": schedule.rule,
        "start_date": schedule.start_date,
        "start_time": schedule.start_time,
        "duration_s": schedule.duration_s,
        "blackout_dates": list(schedule.blackout_dates or []),
        "notice_minutes": schedule.notice_minutes,
        "enabled": schedule.enabled,
        "next_spawn_at": schedule_recurrence(schedule=schedule).next_after(now=timezone.now())
        if schedule.enabled
        else None,
    }


def _schedule_get(schedule_id: int) -> SpawnSchedule:
    schedule = SpawnSchedule.objects.select_related("boss", "template").filter(pk=schedule_id).first()
    if schedule is None:
        raise NotFound(f"no spawn schedule {schedule_id}")
    return schedule


def _fields(payload: Any) -> dict[str, Any]:
    fields = payload.model_dump(exclude_unset=True)
    if "template" in fields:
        fields["template"] = template_get(slug=fields["template"]) if fields["template"] else None
    return fields


@router.get("/spawns", response={200: UpcomingSpawns, **errors()}, auth=auth.READ, summary="Next spawns")
def spawns_next(request: HttpRequest, query: Query[Days]) -> dict[str, Any]:
    """Every boss's spawns of the next ``days`` days (default 14), soonest first."""
    found = spawns_upcoming(now=timezone.now(), days=query.days)
    return {"days": query.days, "items": [_spawn_out(s) for s in found]}


@router.get(
    "/bosses/{slug}/spawns",
    response={200: UpcomingSpawns, **errors(404)},
    auth=auth.READ,
    summary="A boss's next spawns",
)
def boss_spawns_next(request: HttpRequest, slug: str, query: Query[Days]) -> dict[str, Any]:
    """The boss's spawns of the next ``days`` days (default 14), soonest first."""
    found = spawns_upcoming(now=timezone.now(), days=query.days, boss=boss_get(slug=slug))
    return {"days": query.days, "items": [_spawn_out(s) for s in found]}


@router.get(
    "/bosses/{slug}/schedules",
    response={200: SchedulePage, **errors(404)},
    auth=auth.READ,
    summary="A boss's spawn schedules",
)
def schedules_list(request: HttpRequest, slug: str) -> dict[str, Any]:
    """The boss's recurring spawn schedules."""
    boss = boss_get(slug=slug)
    rows = SpawnSchedule.objects.filter(boss=boss).select_related("boss", "template").order_by("id")
    return {"items": [schedule_out(s) for s in rows]}


@router.post(
    "/bosses/{slug}/schedules",
    response={201: ScheduleOut, **errors(404)},
    auth=auth.OPERATE,
    summary="Schedule recurring spawns",
)
def schedules_create(request: HttpRequest, slug: str, payload: ScheduleCreate) -> tuple[int, dict[str, Any]]:
    """A new schedule: the rule, time zone and blackout dates are checked (422 naming the field)."""
    boss = boss_get(slug=slug)
    fields = _fields(payload)
    schedule = audited(
        request,
        action="spawn_schedule.create",
        target=f"boss/{slug}",
        work=lambda: services.spawn_schedule_save(schedule=None, fields={**fields, "boss": boss}),
        detail={"rule": payload.rule},
    )
    return 201, schedule_out(schedule)


@router.patch(
    "/schedules/{schedule_id}",
    response={200: ScheduleOut, **errors(404)},
    auth=auth.OPERATE,
    summary="Edit a spawn schedule",
)
def schedules_update(request: HttpRequest, schedule_id: int, payload: SchedulePatch) -> dict[str, Any]:
    """Change a schedule; occurrences already spawned stay as they were."""
    schedule = _schedule_get(schedule_id)
    fields = _fields(payload)
    saved = audited(
        request,
        action="spawn_schedule.update",
        target=f"boss/{schedule.boss.slug}",
        work=lambda: services.spawn_schedule_save(schedule=schedule, fields=fields),
        detail={"schedule": schedule_id, "fields": sorted(fields)},
    )
    return schedule_out(saved)


@router.get(
    "/schedules/{schedule_id}/occurrences",
    response={200: OccurrencePage, **errors(404)},
    auth=auth.READ,
    summary="A schedule's occurrences",
)
def schedules_occurrences(request: HttpRequest, schedule_id: int, paging: Query[Paging]) -> dict[str, Any]:
    """The occurrences the beat claimed, latest first: the fight each started, or why not."""
    rows = _schedule_get(schedule_id).occurrences.order_by("-at")
    return {
        "count": rows.count(),
        "offset": paging.offset,
        "limit": paging.limit,
        "items": [
            {
                "at": o.at,
                "fight": o.fight,
                "status": o.status,
                "detail": o.detail,
                "attempts": o.attempts,
                "spawned_at": o.spawned_at,
            }
            for o in rows[paging.offset : paging.offset + paging.limit]
        ],
    }
