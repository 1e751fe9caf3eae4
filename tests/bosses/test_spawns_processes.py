"""Recurring spawns over real processes: a Celery beat and worker spawn a fight, let it expire
and spawn the next; two beats (and two workers) at once still spawn each occurrence once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def _schedule(boss, *, every_s: int, duration_s: int):
    """A schedule firing every ``every_s`` seconds from the next whole second on."""
    from bosses.services import spawn_schedule_save

    first = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    return spawn_schedule_save(
        schedule=None,
        fields={
            "boss": boss,
            "timezone": "UTC",
            "rule": f"FREQ=SECONDLY;INTERVAL={every_s}",
            "start_date": first.date(),
            "start_time": first.time(),
            "duration_s": duration_s,
            "notice_minutes": 0,
        },
    )


def _spawned(boss):
    from bosses.models import OccurrenceStatus, SpawnOccurrence

    return list(
        SpawnOccurrence.objects.filter(boss=boss, status=OccurrenceStatus.SPAWNED)
        .order_by("at")
        .values_list("at", "fight")
    )


def test_a_real_beat_spawns_a_fight_lets_it_expire_and_spawns_the_next(celery_stack, make_boss):
    from bosses.models import BossEncounter, BossEvent

    boss = make_boss(slug="every-6s")
    _schedule(boss, every_s=6, duration_s=2)
    wait_until(lambda: len(_spawned(boss)) >= 1, timeout_s=20, what="the first spawn")
    wait_until(
        lambda: BossEncounter.objects.get(pk=boss.pk).status == "expired",
        timeout_s=20,
        what="the first fight expired at the end of its window",
    )
    first = BossEncounter.objects.get(pk=boss.pk)
    assert first.fight == 1 and first.ends_at == _spawned(boss)[0][0] + timedelta(seconds=2)
    wait_until(lambda: len(_spawned(boss)) >= 2, timeout_s=20, what="the next occurrence spawned")
    assert BossEncounter.objects.get(pk=boss.pk).fight == 2
    spawned = _spawned(boss)
    assert [f for _, f in spawned[:2]] == [1, 2]
    assert spawned[1][0] - spawned[0][0] == timedelta(seconds=6)
    # fight 1's history was archived before the reset: it went live, then expired
    statuses = list(
        BossEvent.objects.filter(boss=boss, fight=1).exclude(kind="tick").values_list("status", flat=True)
    )
    assert statuses == ["live", "expired"], statuses


def test_two_beats_at_once_spawn_each_occurrence_once(transactional_db, make_boss):
    from bosses.models import FightConfig, SpawnOccurrence
    from tests.support import processes

    boss = make_boss(slug="twice-beaten")
    _schedule(boss, every_s=3, duration_s=60)
    procs = []
    try:
        procs += [processes.start_worker(), processes.start_worker()]
        procs += [processes.start_beat(), processes.start_beat()]
        wait_until(lambda: len(_spawned(boss)) >= 4, timeout_s=40, what="four spawns")
    finally:
        for proc in reversed(procs):
            proc.discard()
    spawned = _spawned(boss)
    fights = [f for _, f in spawned]
    assert fights == list(range(1, len(spawned) + 1)), spawned  # one fight per occurrence
    gaps = [(b - a).total_seconds() for (a, _), (b, _) in zip(spawned, spawned[1:], strict=False)]
    assert all(g > 0 and g % 3 == 0 for g in gaps), spawned  # occurrences of the rule, each once
    boss.refresh_from_db()
    assert boss.fight == max(fights)  # never reset twice for one occurrence
    assert (
        SpawnOccurrence.objects.filter(boss=boss).exclude(status="spawned").count() <= 1
    )  # the one in flight
    assert sorted(FightConfig.objects.filter(boss=boss).values_list("fight", flat=True)) == list(
        range(1, boss.fight + 1)
    )
