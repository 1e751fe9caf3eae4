"""Reads of recurring spawns: a schedule's recurrence, the next spawns of a boss or of every
boss (the admin calendar, the API, the ICS feed, the boss's public state). docs/liveops.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bosses.models import BossEncounter, SpawnSchedule
from core.recurrence import Recurrence, recurrence_parse

CALENDAR_DAYS = 14
# The ICS feed a player subscribes to lists this many days ahead (calendar apps refresh it).
ICS_DAYS = 60
# The boss's next spawn is looked for this far ahead (a yearly rule still shows its next one).
NEXT_SPAWN_HORIZON = timedelta(days=400)


def schedule_recurrence(*, schedule: SpawnSchedule) -> Recurrence:
    """The schedule's rule as instants (its fields were checked when it was saved)."""
    return recurrence_parse(
        rule=schedule.rule,
        start_date=schedule.start_date,
        start_time=schedule.start_time,
        tz=schedule.timezone,
        blackouts=schedule.blackout_dates or (),
    )


@dataclass(frozen=True)
class UpcomingSpawn:
    """One spawn to come: which boss and schedule, when, and until when (None: until defeated)."""

    boss: str
    boss_name: str
    schedule_id: int
    schedule: str
    timezone: str
    at: datetime
    ends_at: datetime | None

    @property
    def key(self) -> str:
        """The occurrence key (also the ICS UID): schedule and instant."""
        return f"spawn-{self.schedule_id}-{int(self.at.timestamp())}"


def _schedules(boss: BossEncounter | None):
    rows = SpawnSchedule.objects.filter(enabled=True).select_related("boss")
    return rows.filter(boss=boss) if boss is not None else rows


def spawns_upcoming(
    *, now: datetime, days: int = CALENDAR_DAYS, boss: BossEncounter | None = None, limit: int = 500
) -> list[UpcomingSpawn]:
    """The spawns of the next ``days`` days (of one boss, or of all), soonest first."""
    out: list[UpcomingSpawn] = []
    for schedule in _schedules(boss):
        duration = timedelta(seconds=schedule.duration_s) if schedule.duration_s else None
        for at in schedule_recurrence(schedule=schedule).upcoming(
            now=now, horizon=timedelta(days=days), limit=limit
        ):
            out.append(
                UpcomingSpawn(
                    boss=schedule.boss.slug,
                    boss_name=schedule.boss.name,
                    schedule_id=schedule.pk,
                    schedule=str(schedule),
                    timezone=schedule.timezone,
                    at=at,
                    ends_at=at + duration if duration else None,
                )
            )
    out.sort(key=lambda s: (s.at, s.boss, s.schedule_id))
    return out[:limit]


def boss_next_spawn_at(*, boss: BossEncounter, now: datetime) -> datetime | None:
    """When the boss spawns next (the soonest of its enabled schedules), or None."""
    found = [
        at
        for schedule in _schedules(boss)
        if (at := schedule_recurrence(schedule=schedule).next_after(now=now, horizon=NEXT_SPAWN_HORIZON))
    ]
    return min(found) if found else None
