"""Recurring spawns: each occurrence of a schedule starts its fight exactly once (docs/liveops.md).

The beat runs :func:`spawns_apply` every second. For each enabled schedule it takes the
latest occurrence that is due and still inside its window (its duration, or
:data:`CATCH_UP` for a fight without one), so a beat that was down across a start time spawns
on its return, and a window that passed while it was down is not spawned late.

Exactly once, whatever runs it:

- **the occurrence key**: a :class:`~bosses.models.SpawnOccurrence` row per (schedule, instant),
  unique in SQL. Two beats, or two workers, insert it at most once;
- **the lease**: whoever inserted the row, or later took an expired lease with one
  conditional UPDATE, carries the spawn out; nobody else does meanwhile;
- **idempotent steps**: the fight the occurrence starts is stored first; then each step looks
  at where the boss is (end the previous fight, archive and reset it, apply the template, set
  the window, go live) and skips what is done. A worker killed mid-spawn leaves a claimed row
  whose lease runs out; the next pass takes it over and finishes from where the boss is.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from bosses import signals
from bosses.models import (
    BossEncounter,
    BossStatus,
    OccurrenceStatus,
    SagaKind,
    SagaRun,
    SagaStatus,
    SpawnOccurrence,
    SpawnSchedule,
)
from bosses.selectors import boss_state
from bosses.services import (
    boss_end,
    boss_go_live,
    boss_reset,
    boss_template_apply,
    boss_update,
    event_log_archive,
)
from bosses.signals import fight_event_send
from bosses.spawn_selectors import schedule_recurrence
from core.errors import AuthorityUnavailable, LiveOpsError
from core.recurrence import Recurrence

logger = logging.getLogger(__name__)

# How long a worker holds an occurrence it is spawning; a killed worker's is taken over then.
LEASE = timedelta(seconds=30)
# A schedule without a duration still spawns an occurrence this late (a beat that was down).
CATCH_UP = timedelta(hours=1)
WAITING = "waiting"


def spawns_apply(*, now: datetime | None = None) -> list[str]:
    """Spawn every due occurrence and send the upcoming notices; returns what it did."""
    now = now or timezone.now()
    done: list[str] = []
    for schedule in SpawnSchedule.objects.filter(enabled=True).select_related("boss", "template"):
        try:
            recurrence = schedule_recurrence(schedule=schedule)
        except LiveOpsError as exc:  # saved before a check existed: say so, spawn nothing
            logger.error("schedule %s cannot be read: %s", schedule.pk, exc)
            continue
        window = timedelta(seconds=schedule.duration_s) if schedule.duration_s else CATCH_UP
        at = recurrence.latest(now=now, lookback=window)
        if at is not None:
            occurrence = occurrence_spawn(schedule=schedule, at=at, now=now)
            if occurrence is not None:
                done.append(
                    f"{schedule.boss.slug}@{at.isoformat()}: {occurrence.status} {occurrence.detail}".strip()
                )
        _notice_send(schedule=schedule, recurrence=recurrence, now=now)
    done.extend(_stale_claims_close(now=now))
    return done


def _lease_take(occurrence_id: int, *, now: datetime, holder: str) -> bool:
    """Take the occurrence's lease if nobody holds a live one (one conditional UPDATE)."""
    return bool(
        SpawnOccurrence.objects.filter(pk=occurrence_id, status=OccurrenceStatus.CLAIMED)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE, holder=holder)
    )


def occurrence_spawn(*, schedule: SpawnSchedule, at: datetime, now: datetime) -> SpawnOccurrence | None:
    """Spawn the occurrence ``at`` of ``schedule`` unless it is done or someone else holds it;
    returns the row when this call claimed or finished it, None otherwise."""
    holder = uuid.uuid4().hex
    try:
        with transaction.atomic():
            occurrence = SpawnOccurrence.objects.create(
                schedule=schedule, boss_id=schedule.boss_id, at=at, lease_until=now + LEASE, holder=holder
            )
    except IntegrityError:  # another beat or worker has it: take it over only if its lease ran out
        occurrence = SpawnOccurrence.objects.get(schedule=schedule, at=at)
        if occurrence.status != OccurrenceStatus.CLAIMED or not _lease_take(
            occurrence.pk, now=now, holder=holder
        ):
            return None
        occurrence.refresh_from_db()
    occurrence.attempts += 1
    SpawnOccurrence.objects.filter(pk=occurrence.pk).update(attempts=occurrence.attempts)
    try:
        status, detail = _spawn_steps(occurrence=occurrence, schedule=schedule)
    except AuthorityUnavailable as exc:  # Redis is down: the next pass tries again
        status, detail = WAITING, f"authority unavailable: {exc}"
    except LiveOpsError as exc:
        # refused (a boss that cannot go live): recorded, and not retried by every pass
        status, detail = OccurrenceStatus.SKIPPED, f"refused: {exc}"[:200]
        logger.warning("spawn of %s at %s refused: %s", schedule.boss.slug, at.isoformat(), exc)
    fields = {"detail": detail[:200], "lease_until": None}
    if status != WAITING:
        fields["status"] = status
        fields["spawned_at"] = timezone.now() if status == OccurrenceStatus.SPAWNED else None
    SpawnOccurrence.objects.filter(pk=occurrence.pk, holder=holder).update(**fields)
    occurrence.refresh_from_db()
    return occurrence


def _target_fight(occurrence: SpawnOccurrence, boss: BossEncounter) -> int:
    """The fight this occurrence starts, stored before any step (a retry finds the same)."""
    if occurrence.fight is None:
        occurrence.fight = boss.fight if boss.status == BossStatus.DRAFT else boss.fight + 1
        SpawnOccurrence.objects.filter(pk=occurrence.pk).update(fight=occurrence.fight)
    return occurrence.fight


def _victory_pending(boss: BossEncounter, status: str) -> bool:
    """True while the previous fight's death is not settled (its victory saga must read the
    authority before a reset drops it)."""
    if status != BossStatus.DEFEATED:
        return False
    return not SagaRun.objects.filter(
        boss=boss,
        fight=boss.fight,
        kind=SagaKind.VICTORY,
        status__in=[SagaStatus.COMPLETED, SagaStatus.FAILED],
    ).exists()


def _spawn_steps(*, occurrence: SpawnOccurrence, schedule: SpawnSchedule) -> tuple[str, str]:
    """Bring the boss to the occurrence's fight, live; each step skipped when already done."""
    boss = BossEncounter.objects.get(pk=schedule.boss_id)
    target = _target_fight(occurrence, boss)
    if boss.fight > target or (boss.fight == target and boss.status != BossStatus.DRAFT):
        if boss.fight == target:
            return OccurrenceStatus.SPAWNED, "went live"  # an earlier attempt got this far
        return OccurrenceStatus.SKIPPED, f"the boss moved on to fight {boss.fight}"
    if boss.fight == target - 1:  # the previous fight: end it if it runs, then reset
        state = boss_state(boss_id=boss.pk)
        status = state.status if state is not None else boss.status
        if _victory_pending(boss, status):
            return WAITING, f"waiting for the victory saga of fight {boss.fight}"
        if status in (BossStatus.LIVE, BossStatus.PAUSED):
            boss_end(boss=boss)
        event_log_archive(boss=boss)
        boss_reset(boss=boss)
    elif boss.fight != target:
        return OccurrenceStatus.SKIPPED, f"the boss is at fight {boss.fight}, not {target - 1}"
    if schedule.template is not None:
        boss = boss_template_apply(boss=boss, template=schedule.template)
    ends_at = occurrence.at + timedelta(seconds=schedule.duration_s) if schedule.duration_s else None
    boss = boss_update(boss_id=boss.pk, fields={"starts_at": occurrence.at, "ends_at": ends_at})
    boss_go_live(boss=boss)
    return OccurrenceStatus.SPAWNED, f"fight {target}"


def _stale_claims_close(*, now: datetime) -> list[str]:
    """Claimed occurrences whose lease ran out and whose window has passed (their worker died
    and no pass takes them again): skipped, with the reason."""
    done = []
    stale = (
        SpawnOccurrence.objects.filter(status=OccurrenceStatus.CLAIMED)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .select_related("schedule")
    )
    for occurrence in stale:
        schedule = occurrence.schedule
        window = timedelta(seconds=schedule.duration_s) if schedule.duration_s else CATCH_UP
        if occurrence.at + window <= now:
            SpawnOccurrence.objects.filter(pk=occurrence.pk, status=OccurrenceStatus.CLAIMED).update(
                status=OccurrenceStatus.SKIPPED, detail="its window passed before the spawn completed"
            )
            done.append(f"occurrence {occurrence.pk}: skipped")
    return done


def _notice_send(*, schedule: SpawnSchedule, recurrence: Recurrence, now: datetime) -> None:
    """``boss.spawn_upcoming`` once per occurrence, ``notice_minutes`` before it (the key
    makes a repeat of the event, by this pass or another beat, deliver nothing new)."""
    if not schedule.notice_minutes:
        return
    at = recurrence.next_after(now=now, horizon=timedelta(minutes=schedule.notice_minutes))
    if at is None:
        return
    boss = schedule.boss
    ends_at = at + timedelta(seconds=schedule.duration_s) if schedule.duration_s else None
    fight_event_send(
        boss_id=boss.pk,
        slug=boss.slug,
        fight=boss.fight if boss.status == BossStatus.DRAFT else boss.fight + 1,
        event=signals.SPAWN_UPCOMING,
        key=f"{signals.SPAWN_UPCOMING}:{boss.pk}:{schedule.pk}:{int(at.timestamp())}",
        payload={
            "at": at.isoformat(),
            "ends_at": ends_at.isoformat() if ends_at else None,
            "schedule": schedule.pk,
            "timezone": schedule.timezone,
            "notice_minutes": schedule.notice_minutes,
        },
    )
