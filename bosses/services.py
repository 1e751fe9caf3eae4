"""Boss configuration and lifecycle, the sync tick, the victory saga (core steps), event-log
archiving and reward claims.

The admin, the API, the dashboard, Celery tasks and commands call these; nothing else writes
a boss or its authority. What a boss may change in each status is decided in bosses/rules.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from bosses import rules, signals
from bosses.broadcast import messages_publish, messages_publish_many
from bosses.fight_configs import boss_config_current, reward_table_record
from bosses.models import (
    SETTINGS_FIELDS,
    BossEncounter,
    BossEvent,
    BossStatus,
    BossTemplate,
    FightConfig,
    RewardGrant,
    SpawnSchedule,
)
from bosses.selectors import EventLogUndecodable, event_log_row
from bosses.signals import fight_event_send
from core import authority, keys, metrics
from core import messages as wire_messages
from core.clients import Routed, execute_pipelined
from core.errors import (
    AlreadyClaimed,
    AuthorityUnavailable,
    InvalidInput,
    InvalidTransition,
    NotFound,
    UnknownBoss,
)
from core.phases import OPENING_PHASE_NAME, parse_phases, phase_damage_taken, phase_regen, phase_thresholds
from core.recurrence import recurrence_parse
from core.redis import REDIS_DOWN, get_redis
from shards.models import Shard, ShardStatus

logger = logging.getLogger(__name__)

# An applied tick may come this early relative to the boss's interval: the beat itself
# fires every SYNC_TICK_INTERVAL_MS, so a 100 ms boss must not skip a 98 ms beat.
TICK_INTERVAL_SLACK = 0.8
ARCHIVE_BATCH = 1_000
# Bosses one archive pass takes (the rest stay marked for the next pass), and bosses per SQL
# statement of the archive and the restore check: an IN list or an OR of per-boss conditions
# that SQLite (expression depth 1000, 32766 parameters) and PostgreSQL both take.
ARCHIVE_PASS_BOSSES = 1_000
SQL_BATCH_BOSSES = 100
# Entries kept in the Redis stream after they were archived (dashboards read the tail).
LOG_TAIL_KEEP = 500
# A defeated boss still in the live set this long after its death tick means that tick
# crashed between the Lua step and enqueuing the victory saga: enqueue it again.
VICTORY_RECOVERY_AFTER_MS = 2_000
# The victory saga's Celery task (bosses.tasks), enqueued by name: tasks sit above services.
VICTORY_SAGA_TASK = "bosses.victory_saga"
# Bosses ticked per pipeline round trip: big enough to amortize the trip, small enough that
# the first state messages go out while later batches are still being ticked.
TICK_BATCH_SIZE = 500


def _redis():
    return get_redis()


def _set_db_status(boss: BossEncounter, status: str, **fields: Any) -> None:
    BossEncounter.objects.filter(pk=boss.pk).update(status=status, updated_at=timezone.now(), **fields)
    boss.status = status
    for name, value in fields.items():
        setattr(boss, name, value)


def boss_validate_config(*, boss: BossEncounter) -> None:
    """Cross-field checks of a boss's configuration; :class:`InvalidInput` on the first problem."""
    parse_phases(boss.phases)
    if boss.min_damage > boss.max_damage:
        raise InvalidInput("min damage must not exceed max damage", field="min_damage")
    if boss.starts_at and boss.ends_at and boss.ends_at <= boss.starts_at:
        raise InvalidInput("end time must be after start time", field="ends_at")
    if boss.heartbeat_timeout_ms <= boss.heartbeat_interval_ms:
        raise InvalidInput(
            "heartbeat timeout must be longer than the heartbeat interval", field="heartbeat_timeout_ms"
        )


# --- configuration (the admin and the API) ------------------------------------------------


def _validation_error(exc: ValidationError) -> InvalidInput:
    errors = getattr(exc, "error_dict", None) or {"__all__": exc.error_list}
    field, messages = next(iter(errors.items()))
    text = " ".join(m for e in messages for m in e.messages)
    return InvalidInput(f"{field}: {text}" if field != "__all__" else text, field=field)


def _boss_check(boss: BossEncounter) -> None:
    """The model's validation, then the cross-field checks; :class:`InvalidInput` on the first."""
    try:
        boss.full_clean()
    except ValidationError as exc:
        raise _validation_error(exc) from None
    boss_validate_config(boss=boss)


def _designer_fields_check(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - set(rules.DESIGNER_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])


def _slug_taken(boss: BossEncounter) -> InvalidInput:
    return InvalidInput(f"a boss with slug {boss.slug!r} exists", field="slug")


def boss_create(*, fields: Mapping[str, Any]) -> BossEncounter:
    """Create a draft boss from designer ``fields`` (model validation and the cross-field
    checks); nothing is written on a refusal."""
    _designer_fields_check(fields)
    boss = BossEncounter(**fields, status=BossStatus.DRAFT)
    _boss_check(boss)
    try:
        with transaction.atomic():
            boss.save()
    except IntegrityError:  # a concurrent create of the same slug
        raise _slug_taken(boss) from None
    return boss


def boss_update(*, boss_id: int, fields: Mapping[str, Any]) -> BossEncounter:
    """Change designer ``fields`` of a boss as far as its status allows (:mod:`bosses.rules`:
    :class:`InvalidTransition` naming the first frozen field), then validate and save only
    what changed. A field set to the value it holds is no change.

    The row is locked while it is checked and saved, so a status change in between cannot
    slip a frozen field into a running fight; nothing is written on a refusal.
    """
    _designer_fields_check(fields)
    with transaction.atomic():
        boss = BossEncounter.objects.select_for_update().filter(pk=boss_id).first()
        if boss is None:
            raise UnknownBoss(f"no boss #{boss_id}")
        refusal = rules.boss_edit_refusal(boss=boss, changes=fields)
        if refusal is not None:
            field, reason = refusal
            raise InvalidTransition(reason, field=field)
        changed = rules.boss_changed_fields(boss=boss, changes=fields)
        if not changed:
            return boss
        for name in changed:
            setattr(boss, name, fields[name])
        _boss_check(boss)
        try:
            with transaction.atomic():
                boss.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            raise _slug_taken(boss) from None
        if boss.status in rules.RUNNING:
            # what the running fight reads afresh is recorded as the fight has it now
            fight_config_record(boss=boss, fields=changed)
    return boss


def boss_schedule_set(*, boss_id: int, starts_at: datetime | None, ends_at: datetime | None) -> BossEncounter:
    """Set when the boss goes live and when it expires (the beat applies it every second).

    The rules of :func:`boss_update`: ``starts_at`` only changes on a draft, ``ends_at`` also
    while the fight runs, and an ended fight keeps its schedule.
    """
    return boss_update(boss_id=boss_id, fields={"starts_at": starts_at, "ends_at": ends_at})


def _state_messages(out: authority.TickOutcome | None, state: authority.BossState) -> list[dict]:
    messages = [state.as_message()]
    if out is not None and out.phase != out.old_phase:
        messages.append(
            wire_messages.phase_frame(
                boss=state.slug,
                phase=state.phase_name,
                phase_index=state.phase,
                version=state.version,
                ts=state.ts_ms,
            )
        )
    return messages


def boss_publish_state(*, boss_id: int, extra: list[dict] | None = None) -> authority.BossState | None:
    """Read the authority and publish its absolute state (plus ``extra`` events)."""
    state = authority.read_state(_redis(), boss_id)
    if state is not None:
        messages_publish(boss_id=boss_id, messages=[state.as_message(), *(extra or [])])
    return state


def boss_go_live(*, boss: BossEncounter) -> authority.BossState:
    """Seed the authority from the configuration and start ticking (draft -> live)."""
    boss_validate_config(boss=boss)
    if boss.status != BossStatus.DRAFT:
        raise InvalidTransition(
            f"{boss.slug} is {boss.status}; only a draft boss can go live "
            "(use resume for a paused one, reset for an ended one)"
        )
    floors = {
        s.key: s.current_epoch + 1
        for s in Shard.objects.filter(status=ShardStatus.RETIRED).only("key", "current_epoch")
    }
    thresholds = phase_thresholds(parse_phases(boss.phases), boss.max_hp)
    fight_config_freeze(boss=boss)
    if not boss.incarnation:
        # Stored before the seed: a go-live that dies after seeding finds its own authority.
        boss.incarnation = uuid.uuid4().hex
        BossEncounter.objects.filter(pk=boss.pk).update(incarnation=boss.incarnation)
    try:
        out = authority.run(
            _redis(),
            authority.seed_call(
                boss_id=boss.pk,
                max_hp=boss.max_hp,
                phases=thresholds,
                damage_taken=phase_damage_taken(boss.phases),
                regen=phase_regen(boss.phases),
                opening=OPENING_PHASE_NAME,
                fight=boss.fight,
                slug=boss.slug,
                min_tick_ms=int(boss.tick_interval_ms * TICK_INTERVAL_SLACK),
                floors=floors,
                incarnation=boss.incarnation,
            ),
        )
        if out.code == "exists" and out.incarnation and out.incarnation != boss.incarnation:
            raise InvalidTransition(
                f"the authority in Redis for {boss.slug} (boss #{boss.pk}) belongs to another "
                f"database or fight (incarnation {out.incarnation}, this fight's is "
                f"{boss.incarnation}): point REDIS_URL at this deployment's Redis"
            )
        if out.code == "exists" and out.status != BossStatus.LIVE:
            raise InvalidTransition(
                f"{boss.slug} already has an authority with status {out.status}; reset it first"
            )
        _redis().sadd(keys.LIVE_BOSSES, boss.pk)
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    _set_db_status(boss, BossStatus.LIVE)
    state = boss_publish_state(boss_id=boss.pk)
    assert state is not None
    fight_event_send(
        boss_id=boss.pk,
        slug=boss.slug,
        fight=boss.fight,
        event=signals.WENT_LIVE,
        payload={"max_hp": boss.max_hp, "hp": state.hp, "version": state.version},
    )
    return state


def _transition(
    boss: BossEncounter, *, to: str, allowed_from: tuple[str, ...], verb: str
) -> authority.BossState:
    try:
        out = authority.run(
            _redis(), authority.transition_call(boss_id=boss.pk, to=to, allowed_from=allowed_from)
        )
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    if out.code == "no_boss":
        raise InvalidTransition(f"cannot {verb} {boss.slug}: it has no live authority (status {boss.status})")
    if out.code == "refused":
        raise InvalidTransition(f"cannot {verb} {boss.slug}: it is {out.status}")
    _set_db_status(boss, to)
    extra = (
        [wire_messages.expired_frame(boss=boss.slug, version=out.version)] if to == BossStatus.EXPIRED else []
    )
    state = boss_publish_state(boss_id=boss.pk, extra=extra)
    assert state is not None
    return state


def boss_pause(*, boss: BossEncounter) -> authority.BossState:
    """Freeze HP: deltas are refused and buffers wait until resume (live -> paused)."""
    return _transition(boss, to=BossStatus.PAUSED, allowed_from=(BossStatus.LIVE,), verb="pause")


def boss_resume(*, boss: BossEncounter) -> authority.BossState:
    """Accept and apply damage again (paused -> live)."""
    return _transition(boss, to=BossStatus.LIVE, allowed_from=(BossStatus.PAUSED,), verb="resume")


def boss_end(*, boss: BossEncounter) -> authority.BossState:
    """End the fight undefeated (live/paused -> expired); the boss enrages and leaves.

    A live boss's buffers are applied first: the tick skips a boss that is over, so damage
    accepted before the end would otherwise stay buffered for good (``verify_boss`` reports
    that). That tick may defeat the boss; the end is then refused and its victory saga runs.
    """
    try:
        current = authority.read_state(_redis(), boss.pk)
        if current is not None and current.status == BossStatus.LIVE:
            boss_tick(boss_id=boss.pk, force=True)
    except REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"Redis is unreachable: {exc}") from exc
    state = _transition(
        boss, to=BossStatus.EXPIRED, allowed_from=(BossStatus.LIVE, BossStatus.PAUSED), verb="end"
    )
    _redis().srem(keys.LIVE_BOSSES, boss.pk)
    fight_event_send(
        boss_id=boss.pk,
        slug=boss.slug,
        fight=boss.fight,
        event=signals.EXPIRED,
        payload={"hp": state.hp, "max_hp": state.max_hp, "version": state.version},
    )
    return state


def boss_reset(*, boss: BossEncounter, now: datetime | None = None) -> BossEncounter:
    """Start the next fight: drop the authority and make the boss a draft again (not while live).

    A start or end time already past is cleared: kept, it would make the beat relaunch the
    draft at its next pass (:func:`boss_schedules_apply`), before the designer set the next
    fight up. A future one is kept: that is the next fight's schedule.
    """
    now = now or timezone.now()
    state = authority.read_state(_redis(), boss.pk)
    current = state.status if state else boss.status
    if current == BossStatus.LIVE:
        raise InvalidTransition(f"cannot reset {boss.slug} while it is live; pause or end it first")
    with transaction.atomic():
        _redis().delete(*keys.BossKeys(boss.pk).all())
        _redis().srem(keys.LIVE_BOSSES, boss.pk)
        _set_db_status(
            boss,
            BossStatus.DRAFT,
            fight=boss.fight + 1,
            defeated_at=None,
            final_version=None,
            final_hp=None,
            incarnation="",
            authority_gen=0,
            starts_at=boss.starts_at if boss.starts_at and boss.starts_at > now else None,
            ends_at=boss.ends_at if boss.ends_at and boss.ends_at > now else None,
        )
    return boss


# --- templates and frozen fight configurations (docs/liveops.md) ---------------------------


def fight_config_freeze(*, boss: BossEncounter, now: datetime | None = None) -> FightConfig:
    """Freeze the configuration of the boss's current fight (at go-live, while it is a draft).

    A go-live that failed and is tried again after an edit freezes the edited configuration:
    the fight has not started until the authority is seeded.
    """
    row, _ = FightConfig.objects.update_or_create(
        boss=boss,
        fight=boss.fight,
        defaults={
            "template_id": boss.template_id,
            "config": boss_config_current(boss=boss),
            "frozen_at": now or timezone.now(),
        },
    )
    return row


def fight_config_record(*, boss: BossEncounter, fields: Sequence[str], fight: int | None = None) -> None:
    """Record ``fields`` of the boss's current row into the configuration of ``fight`` (the
    current one by default): a setting the running fight reads afresh changed. Nothing is
    recorded for a fight that has no frozen configuration."""
    with transaction.atomic():
        row = (
            FightConfig.objects.select_for_update()
            .filter(boss=boss, fight=fight if fight is not None else boss.fight)
            .first()
        )
        if row is None:
            return
        current = boss_config_current(boss=boss)
        for name in fields:
            if name in current:
                row.config[name] = current[name]
        row.save(update_fields=["config", "updated_at"])


def fight_reward_table_record(*, boss_id: int, fight: int, table: Any) -> None:
    """Record the reward table a fight's victory granted from (its tiers as they were read)."""
    with transaction.atomic():
        row = FightConfig.objects.select_for_update().filter(boss_id=boss_id, fight=fight).first()
        if row is not None:
            row.config["reward_table"] = reward_table_record(table=table)
            row.save(update_fields=["config", "updated_at"])


def _settings_of(source: BossEncounter | BossTemplate) -> dict[str, Any]:
    return {f: getattr(source, f) for f in SETTINGS_FIELDS}


def _template_check(template: BossTemplate) -> None:
    try:
        template.full_clean()
    except ValidationError as exc:
        raise _validation_error(exc) from None
    parse_phases(template.phases)
    if template.min_damage > template.max_damage:
        raise InvalidInput("min damage must not exceed max damage", field="min_damage")
    if template.heartbeat_timeout_ms <= template.heartbeat_interval_ms:
        raise InvalidInput(
            "heartbeat timeout must be longer than the heartbeat interval", field="heartbeat_timeout_ms"
        )


TEMPLATE_FIELDS = ("name", "slug", "description", *SETTINGS_FIELDS)


def template_save(*, template: BossTemplate | None, fields: Mapping[str, Any]) -> BossTemplate:
    """Create (``template`` None) or change a template from designer ``fields``; the fights
    already started from it keep their frozen configuration."""
    unknown = set(fields) - set(TEMPLATE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    target = template or BossTemplate()
    for name, value in fields.items():
        setattr(target, name, value)
    _template_check(target)
    try:
        with transaction.atomic():
            target.save()
    except IntegrityError:
        raise InvalidInput(
            f"a template named {target.name!r} or slugged {target.slug!r} exists", field="slug"
        ) from None
    return target


def template_from_boss(*, boss: BossEncounter, name: str, slug: str) -> BossTemplate:
    """A new template with the settings of ``boss`` (to start its next fights from)."""
    return template_save(template=None, fields={"name": name, "slug": slug, **_settings_of(boss)})


def boss_create_from_template(
    *, template: BossTemplate, name: str, slug: str, fields: Mapping[str, Any] | None = None
) -> BossEncounter:
    """A new draft boss with the template's settings (``fields`` override any designer field)."""
    boss = boss_create(fields={"name": name, "slug": slug, **_settings_of(template), **(fields or {})})
    BossEncounter.objects.filter(pk=boss.pk).update(template=template)
    boss.template = template
    return boss


def boss_copy(*, boss: BossEncounter, name: str, slug: str) -> BossEncounter:
    """A new draft boss with the settings of ``boss`` (and its template); no schedule, no history."""
    copy = boss_create(fields={"name": name, "slug": slug, **_settings_of(boss)})
    if boss.template_id:
        BossEncounter.objects.filter(pk=copy.pk).update(template_id=boss.template_id)
        copy.template_id = boss.template_id
    return copy


def boss_template_apply(*, boss: BossEncounter, template: BossTemplate) -> BossEncounter:
    """Give a draft boss the template's settings (the next fight starts with them)."""
    updated = boss_update(boss_id=boss.pk, fields=_settings_of(template))
    BossEncounter.objects.filter(pk=boss.pk).update(template=template)
    updated.template = template
    return updated


# --- recurring spawn schedules (docs/liveops.md) ---------------------------------------------

SCHEDULE_FIELDS = (
    "boss",
    "name",
    "template",
    "timezone",
    "rule",
    "start_date",
    "start_time",
    "duration_s",
    "blackout_dates",
    "notice_minutes",
    "enabled",
)


def spawn_schedule_save(*, schedule: SpawnSchedule | None, fields: Mapping[str, Any]) -> SpawnSchedule:
    """Create (``schedule`` None) or change a recurring spawn schedule: the model's validation,
    then the rule, time zone and blackout dates (:func:`core.recurrence.recurrence_parse`).
    A change applies to occurrences not spawned yet; spawned ones stay as they were."""
    unknown = set(fields) - set(SCHEDULE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    target = schedule or SpawnSchedule()
    for name, value in fields.items():
        setattr(target, name, value)
    if not isinstance(target.blackout_dates, list):
        raise InvalidInput("blackout_dates must be a list of YYYY-MM-DD dates", field="blackout_dates")
    try:
        target.full_clean()
    except ValidationError as exc:
        raise _validation_error(exc) from None
    recurrence = recurrence_parse(
        rule=target.rule,
        start_date=target.start_date,
        start_time=target.start_time,
        tz=target.timezone,
        blackouts=target.blackout_dates,
    )
    target.rule = recurrence.rule
    target.blackout_dates = sorted(d.isoformat() for d in recurrence.blackouts)
    target.save()
    return target


# --- the sync tick -----------------------------------------------------------------


def boss_tick(*, boss_id: int, force: bool = False) -> authority.TickOutcome:
    """Drain and apply one boss's buffers; publish the new state; start the victory saga on death.

    Safe to re-run at any point: the Lua step is atomic and drains what it applies, and the
    follow-up (broadcast, saga enqueue) is idempotent and repeated while the boss is defeated
    but still marked dirty. Raises what the Redis call raised.
    """
    out = bosses_tick(boss_ids=[boss_id], force=force)[boss_id]
    if isinstance(out, Exception):
        raise out
    return out


def bosses_tick(
    *, boss_ids: Sequence[int], force: bool = False
) -> dict[int, authority.TickOutcome | Exception]:
    """Tick ``boss_ids`` in one pipeline, publish every applied state in one more, then the
    (rare) follow-ups: a death enqueues the victory saga; a defeated, ended or reset boss leaves
    the live set and its bucket's dirty set. A boss whose call failed maps to its exception.
    """
    r = _redis()
    ids = list(boss_ids)
    outcomes = authority.run_many(r, [authority.tick_call(boss_id=b, force=force) for b in ids])
    results = dict(zip(ids, outcomes, strict=True))
    batches = {
        b: _state_messages(out, out.state())
        for b, out in results.items()
        if not isinstance(out, Exception) and out.code == "applied"
    }
    messages_publish_many(batches=batches)
    for boss_id, out in results.items():
        if not isinstance(out, Exception):
            _tick_follow_up(r, boss_id, out)
            if out.code == "applied" and out.phase != out.old_phase:
                _phase_event_send(r, boss_id, out.state())
    return results


def _phase_event_send(r, boss_id: int, state: authority.BossState) -> None:
    # rare (a few per fight): one more read for the fight number; listeners only enqueue,
    # so the tick pass never waits on a game's endpoint
    fight = int(r.hget(keys.BossKeys(boss_id).state, "fight") or 0)
    fight_event_send(
        boss_id=boss_id,
        slug=state.slug,
        fight=fight,
        event=signals.PHASE,
        occurrence=str(state.phase),
        payload={
            "phase": state.phase_name,
            "phase_index": state.phase,
            "hp": state.hp,
            "max_hp": state.max_hp,
            "version": state.version,
        },
    )


def _tick_follow_up(r, boss_id: int, out: authority.TickOutcome) -> None:
    k = keys.BossKeys(boss_id)
    if out.defeated:
        # Only the tick that applied the death enqueues the saga; the boss stays marked dirty
        # until its follow-up is done, so a crash in between is retried by the branch below.
        victory_enqueue(boss_id=boss_id)
        _unmark(r, boss_id)
    elif out.status == BossStatus.DEFEATED:
        if _death_left_behind(r, boss_id):
            if r.sismember(keys.LIVE_BOSSES, boss_id):
                victory_enqueue(boss_id=boss_id)
            _unmark(r, boss_id)
    elif out.code == "no_boss" or out.status == BossStatus.EXPIRED:
        _unmark(r, boss_id)
    elif out.code == "idle" and out.status not in (BossStatus.LIVE, BossStatus.PAUSED):
        r.srem(k.dirty, boss_id)


def _unmark(r, boss_id: int) -> None:
    """The boss has nothing left for the tick: out of the live set, then out of its dirty set
    (in this order, so a crash in between leaves it marked and the tick retries)."""
    r.srem(keys.LIVE_BOSSES, boss_id)
    r.srem(keys.BossKeys(boss_id).dirty, boss_id)


def _death_left_behind(r, boss_id: int) -> bool:
    """True when the boss died long enough ago that the death tick must have crashed
    before finishing its follow-up (a concurrent tick must not enqueue a second saga)."""
    defeated_ms = int(r.hget(keys.BossKeys(boss_id).state, "defeated_ms") or 0)
    now_s, now_us = r.time()
    return (now_s * 1000 + now_us // 1000) - defeated_ms > VICTORY_RECOVERY_AFTER_MS


def tick_partition_buckets(*, partition: int, partitions: int) -> list[int]:
    """The buckets one partition of the tick pass owns (``bucket % partitions == partition``)."""
    if not 0 <= partition < partitions:
        raise InvalidInput(f"partition must be in [0, {partitions}), got {partition}", field="partition")
    return [b for b in range(keys.TICK_BUCKETS) if b % partitions == partition]


def tick_pass_claim(*, partition: int) -> bool:
    """Claim the next pass of a tick partition; False when one started less than half an
    interval ago (a backlog of beat sends: the pass that ran drained everything, so the
    stale task returns after this one command instead of running a pass)."""
    claim_ms = max(1, settings.SYNC_TICK_INTERVAL_MS // 2)
    try:
        return bool(_redis().set(keys.tick_claim_key(partition), 1, nx=True, px=claim_ms))
    except REDIS_DOWN:
        # The claim's node is away (one master of a Redis Cluster down): run the pass anyway,
        # so that the bosses of the other masters still tick; a second pass is harmless.
        return True


def boss_tick_all(
    *, partition: int = 0, partitions: int = 1, force: bool = False
) -> dict[int, authority.TickOutcome]:
    """One sync tick pass over the dirty bosses of one partition (the beat entry: one task per
    partition every SYNC_TICK_INTERVAL_MS, so more workers tick more partitions at once).

    A boss costs something only when it is marked dirty (damage buffered, or a follow-up
    pending): the pass reads its buckets' dirty sets in one pipeline and ticks the marked
    bosses in pipelined batches of TICK_BATCH_SIZE. A boss belongs to exactly one bucket and
    a bucket to one partition; two passes over the same boss are harmless anyway (the Lua
    drain is atomic). ``force`` ignores each boss's minimum tick interval.
    """
    r = _redis()
    buckets = tick_partition_buckets(partition=partition, partitions=partitions)
    commands: list[Routed] = []
    if partition == 0:  # one record per tick, not per partition
        commands.append((keys.TICK_TIMES, ("LPUSH", keys.TICK_TIMES, int(time.time() * 1000))))
        commands.append((keys.TICK_TIMES, ("LTRIM", keys.TICK_TIMES, 0, keys.TICK_TIMES_KEEP - 1)))
    commands += [(keys.dirty_key(b), ("SMEMBERS", keys.dirty_key(b))) for b in buckets]
    # One pipeline (one per master on a Redis Cluster: a master that is down fails only its
    # own buckets, and the bosses of the others still tick; docs/topologies.md).
    replies = execute_pipelined(r, commands)[-len(buckets) :]
    down = [reply for reply in replies if isinstance(reply, Exception)]
    if len(down) == len(replies):
        raise down[0]
    ids = sorted({int(i) for members in replies if not isinstance(members, Exception) for i in members})
    results: dict[int, authority.TickOutcome] = {}
    for start in range(0, len(ids), TICK_BATCH_SIZE):
        batch = ids[start : start + TICK_BATCH_SIZE]
        for boss_id, out in bosses_tick(boss_ids=batch, force=force).items():
            if isinstance(out, REDIS_DOWN):
                down.append(out)
                continue
            if isinstance(out, Exception):  # one broken boss must not stop the others' ticks
                logger.error("tick of boss %s failed: %r", boss_id, out, extra={"boss": boss_id})
                continue
            results[boss_id] = out
    if down:  # after every reachable boss was ticked: the task reports the outage
        raise down[0]
    return results


# --- victory saga (core steps; see docs/sagas.md) --------------------------------------


def victory_enqueue(*, boss_id: int) -> None:
    """Enqueue the victory saga; the saga's own record makes a repeated enqueue harmless."""
    r = _redis()
    fight = int(r.hget(keys.BossKeys(boss_id).state, "fight") or 0)
    # Pending until the resume sweep sees its saga finished: a task lost on the way is found
    # there without reading every boss (bosses/sagas/victory.py victory_sagas_resume).
    r.sadd(keys.VICTORY_PENDING, boss_id)
    current_app.send_task(
        VICTORY_SAGA_TASK, kwargs={"boss_id": boss_id, "fight": fight}, task_id=f"victory-{boss_id}-{fight}"
    )


# --- event log archive ---------------------------------------------------------------


def event_log_archive(*, boss: BossEncounter) -> int:
    """Copy new event-log entries of the current fight to SQL (idempotent); returns how many.

    The unique (boss, fight, version) constraint makes a re-run or a concurrent run harmless;
    the stream is trimmed only below what SQL already holds, keeping a tail for dashboards.
    An entry that cannot be read: the entries before it are archived, the problem is recorded
    (the ``worldboss_event_log_undecodable`` gauge, ``keys.ARCHIVE_PROBLEMS`` for the ops
    overview; ``verify_boss`` names it too) and :class:`EventLogUndecodable` is raised.
    """
    r = _redis()
    log_key = keys.BossKeys(boss.pk).log
    last = (
        BossEvent.objects.filter(boss=boss, fight=boss.fight)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    ) or 0
    copied = 0
    try:
        while True:
            entries = r.xrange(log_key, min=f"{last + 1}-0", count=ARCHIVE_BATCH)
            if not entries:
                break
            rows: list[BossEvent] = []
            bad: EventLogUndecodable | None = None
            for entry_id, f in entries:
                try:
                    rows.append(event_log_row(boss=boss, entry_id=entry_id, fields=f))
                except EventLogUndecodable as exc:
                    bad = exc
                    break
            if rows:
                BossEvent.objects.bulk_create(rows, ignore_conflicts=True)
                _archived_seqs_record(r, boss.pk, rows)
                copied += len(rows)
                last = rows[-1].version
            if bad is not None:
                raise bad
    except EventLogUndecodable as exc:
        _archive_problem_record(r, boss=boss, problem=str(exc))
        raise
    _archive_problem_record(r, boss=boss, problem=None)
    if last > LOG_TAIL_KEEP:
        r.xtrim(log_key, minid=f"{last - LOG_TAIL_KEEP}-0", approximate=False)
    return copied


def _archive_problem_record(r, *, boss: BossEncounter, problem: str | None) -> None:
    """Report (or clear) the boss's archive problem: a log line, the gauge, the overview's hash."""
    metrics.EVENT_LOG_UNDECODABLE.labels(boss=boss.slug).set(1 if problem else 0)
    if problem is None:
        r.hdel(keys.ARCHIVE_PROBLEMS, str(boss.pk))
        return
    logger.error("%s", problem)
    r.hset(keys.ARCHIVE_PROBLEMS, str(boss.pk), problem)


def _archived_seqs_record(r, boss_id: int, rows: list[BossEvent]) -> None:
    """Tell the authority which seqs the SQL archive now holds (heartbeats report them to the
    clients as ``durable_seq``: they stop keeping those deltas for a re-send)."""
    high: dict[str, int] = {}
    for row in rows:
        for session, seq in row.seqs.items():
            high[session] = max(high.get(session, 0), int(seq))
    if high:
        r.hset(keys.BossKeys(boss_id).archived, mapping=high)


def unarchived_take(*, limit: int = ARCHIVE_PASS_BOSSES) -> list[int]:
    """Take up to ``limit`` bosses (lowest ids first) out of the buckets' unarchived sets.

    Every script that appends to a log marks its boss there, atomically with the entry. The
    marks are taken *before* the logs are copied, so an entry appended during the copy marks
    the boss again for the next pass; bosses past ``limit`` stay marked for the next pass.
    One pipeline (one per master on a cluster) reads the 256 sets, one removes the taken ids.
    """
    r = _redis()
    names = [keys.unarchived_key(b) for b in range(keys.TICK_BUCKETS)]
    replies = execute_pipelined(r, [(name, ("SMEMBERS", name)) for name in names])
    down = [reply for reply in replies if isinstance(reply, Exception)]
    if len(down) == len(replies):
        raise down[0]
    ids = sorted({int(i) for members in replies if not isinstance(members, Exception) for i in members})
    ids = ids[:limit]
    if ids:
        execute_pipelined(r, [(_unarchived(i), ("SREM", _unarchived(i), i)) for i in ids])
    return ids


def unarchived_mark(*, boss_ids: Sequence[int]) -> None:
    """Mark bosses for the next archive pass again (their copy failed or was not reached)."""
    if boss_ids:
        execute_pipelined(_redis(), [(_unarchived(i), ("SADD", _unarchived(i), i)) for i in boss_ids])


def _unarchived(boss_id: int) -> str:
    return keys.boss_keys(boss_id).unarchived


def event_log_archive_all(*, boss_ids: Sequence[int] | None = None) -> int:
    """Archive the logs of the bosses whose log changed since the last pass (``boss_ids``, by
    default those :func:`unarchived_take` takes): the cost follows the changed fights, not
    the live ones. SQL reads go by batches of SQL_BATCH_BOSSES ids.

    Each boss on its own: a boss whose log holds an entry that cannot be read is reported
    (:func:`event_log_archive`), marked again (so it is retried every pass) and skipped, and
    every other boss is archived as usual. Any other failure puts the bosses not yet
    archived back for the next pass, then propagates.
    """
    ids = unarchived_take() if boss_ids is None else list(boss_ids)
    total = 0
    undecodable: list[int] = []
    for start in range(0, len(ids), SQL_BATCH_BOSSES):
        batch = ids[start : start + SQL_BATCH_BOSSES]
        try:
            for boss in BossEncounter.objects.filter(pk__in=batch).exclude(status=BossStatus.DRAFT):
                try:
                    total += event_log_archive(boss=boss)
                except EventLogUndecodable:
                    undecodable.append(boss.pk)  # reported by event_log_archive
        except Exception:
            unarchived_mark(boss_ids=[*undecodable, *ids[start:]])
            raise
    unarchived_mark(boss_ids=undecodable)
    return total


# --- schedule --------------------------------------------------------------------------


def boss_schedules_apply(*, now: datetime | None = None) -> list[str]:
    """Go live at ``starts_at``; expire (enrage) at ``ends_at``. Returns what it did."""
    now = now or timezone.now()
    done: list[str] = []
    for boss in BossEncounter.objects.filter(status=BossStatus.DRAFT, starts_at__lte=now):
        if boss.ends_at and boss.ends_at <= now:
            continue  # its window has passed; starting it would only expire it again
        try:
            boss_go_live(boss=boss)
            done.append(f"{boss.slug}: live")
        except (InvalidTransition, InvalidInput) as exc:
            logger.warning("scheduled start of %s refused: %s", boss.slug, exc)
    for boss in BossEncounter.objects.filter(
        status__in=[BossStatus.LIVE, BossStatus.PAUSED], ends_at__lte=now
    ):
        try:
            boss_end(boss=boss)
            done.append(f"{boss.slug}: expired")
        except InvalidTransition as exc:  # defeated in the meantime: the saga owns it
            logger.info("scheduled end of %s skipped: %s", boss.slug, exc)
    return done


# --- rewards -------------------------------------------------------------------------------


def reward_claim(*, grant_id: int, claim_id: str, now: datetime | None = None) -> tuple[RewardGrant, bool]:
    """Claim a reward grant once: returns ``(grant, first)``.

    One conditional UPDATE (``WHERE claimed_at IS NULL``) decides between concurrent claims,
    on SQLite and PostgreSQL alike; a retry with the winning ``claim_id`` gets the same grant
    back (``first`` False), any other ``claim_id`` :class:`AlreadyClaimed`.
    """
    if not claim_id or len(claim_id) > 64:
        raise InvalidInput("claim_id must be 1 to 64 characters", field="claim_id")
    now = now or timezone.now()
    won = RewardGrant.objects.filter(pk=grant_id, claimed_at__isnull=True).update(
        claimed_at=now, claim_id=claim_id
    )
    grant = RewardGrant.objects.select_related("boss").filter(pk=grant_id).first()
    if grant is None:
        raise NotFound(f"no reward grant {grant_id}")
    if not won and grant.claim_id != claim_id:
        raise AlreadyClaimed(
            f"reward grant {grant_id} was already claimed with another claim_id", claim_id=claim_id
        )
    return grant, bool(won)
