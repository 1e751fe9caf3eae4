"""Recurring spawns with an injected clock: daylight-saving changes on both transitions, a
late beat, blackout dates, a worker that dies mid-spawn, refusals (docs/liveops.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bosses.models import BossEncounter, FightConfig, OccurrenceStatus, SpawnOccurrence
from bosses.sagas import spawn
from bosses.sagas.spawn import spawns_apply
from bosses.services import spawn_schedule_save, template_save
from bosses.spawn_selectors import boss_next_spawn_at, spawns_upcoming
from core.errors import InvalidInput
from core.recurrence import recurrence_parse

pytestmark = pytest.mark.django_db

PARIS = "Europe/Paris"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def wall(instants: list[datetime], tz: str = PARIS) -> list[str]:
    from zoneinfo import ZoneInfo

    return [i.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z") for i in instants]


def test_a_daily_spawn_keeps_its_wall_time_across_both_transitions():
    evening = recurrence_parse(rule="FREQ=DAILY", start_date=date(2027, 1, 1), start_time=time(20), tz=PARIS)
    spring = evening.between(utc(2027, 3, 26), utc(2027, 3, 30))
    assert spring == [utc(2027, 3, 26, 19), utc(2027, 3, 27, 19), utc(2027, 3, 28, 18), utc(2027, 3, 29, 18)]
    autumn = evening.between(utc(2027, 10, 29), utc(2027, 11, 2))
    assert autumn == [
        utc(2027, 10, 29, 18),
        utc(2027, 10, 30, 18),
        utc(2027, 10, 31, 19),
        utc(2027, 11, 1, 19),
    ]
    # New York changes on other Sundays: its 20:00 is 01:00 UTC the next day in winter, 00:00 in summer
    ny = recurrence_parse(
        rule="FREQ=DAILY", start_date=date(2027, 1, 1), start_time=time(20), tz="America/New_York"
    )
    assert ny.between(utc(2027, 3, 13), utc(2027, 3, 15, 12)) == [
        utc(2027, 3, 13, 1),
        utc(2027, 3, 14, 1),
        utc(2027, 3, 15, 0),  # 14 March: summer time from 02:00 local
    ]


def test_a_wall_time_the_change_skips_or_repeats_spawns_once():
    night = recurrence_parse(rule="FREQ=DAILY", start_date=date(2027, 1, 1), start_time=time(2, 30), tz=PARIS)
    # 28 March: 02:30 does not exist (02:00 -> 03:00); it spawns at 03:30 summer time
    spring = night.between(utc(2027, 3, 27), utc(2027, 3, 29, 12))
    assert wall(spring) == ["03-27 02:30+0100", "03-28 03:30+0200", "03-29 02:30+0200"]
    # 31 October: 02:30 happens twice (03:00 -> 02:00); it spawns once, at the first (summer time)
    autumn = night.between(utc(2027, 10, 30), utc(2027, 11, 1, 12))
    assert wall(autumn) == ["10-30 02:30+0200", "10-31 02:30+0200", "11-01 02:30+0100"]
    # an hourly rule across the spring gap: 02:00 and 03:00 are one instant, one spawn
    hourly = recurrence_parse(rule="FREQ=HOURLY", start_date=date(2027, 3, 28), start_time=time(0), tz=PARIS)
    instants = hourly.between(utc(2027, 3, 27, 23), utc(2027, 3, 28, 3))
    assert instants == [utc(2027, 3, 28, 0), utc(2027, 3, 28, 1), utc(2027, 3, 28, 2), utc(2027, 3, 28, 3)]


@pytest.fixture
def nightly(make_boss):
    """A boss spawned every night at 02:30 in Paris, each fight one hour."""
    boss = make_boss(slug="night-hydra", max_hp=10_000)
    schedule = spawn_schedule_save(
        schedule=None,
        fields={
            "boss": boss,
            "name": "Night hydra",
            "timezone": PARIS,
            "rule": "FREQ=DAILY",
            "start_date": date(2027, 1, 1),
            "start_time": time(2, 30),
            "duration_s": 3600,
        },
    )
    return boss, schedule


def _spawned(boss) -> list[tuple[datetime, int]]:
    rows = SpawnOccurrence.objects.filter(boss=boss, status=OccurrenceStatus.SPAWNED).order_by("at")
    return [(o.at, o.fight) for o in rows]


def test_spawns_through_both_transitions_with_an_injected_clock(nightly):
    boss, _ = nightly
    # the beat's passes every 5 minutes through three nights around each change
    for start in (utc(2027, 3, 26, 23), utc(2027, 10, 29, 22)):
        now = start
        while now < start + timedelta(days=3):
            spawns_apply(now=now)
            now += timedelta(minutes=5)
    at = [a for a, _ in _spawned(boss)]
    assert wall(at) == [
        "03-27 02:30+0100",
        "03-28 03:30+0200",
        "03-29 02:30+0200",
        "10-30 02:30+0200",
        "10-31 02:30+0200",  # once, although 02:30 came twice that night
        "11-01 02:30+0100",
    ]
    assert [f for _, f in _spawned(boss)] == [1, 2, 3, 4, 5, 6]
    boss.refresh_from_db()
    assert (boss.fight, boss.status) == (6, "live")
    frozen = FightConfig.objects.get(boss=boss, fight=2).config
    assert frozen["starts_at"] == "2027-03-28T01:30:00+00:00"
    assert frozen["ends_at"] == "2027-03-28T02:30:00+00:00"


def test_a_beat_back_after_the_start_spawns_within_the_window_only(nightly):
    boss, _ = nightly
    at = utc(2027, 1, 10, 1, 30)  # 02:30 in Paris
    assert spawns_apply(now=at + timedelta(minutes=70)) == []  # the hour-long window passed
    assert not SpawnOccurrence.objects.exists()
    done = spawns_apply(now=at + timedelta(minutes=40))  # a beat that was down at 02:30
    assert len(done) == 1 and "spawned" in done[0]
    boss.refresh_from_db()
    assert (boss.status, boss.starts_at, boss.ends_at) == ("live", at, at + timedelta(hours=1))
    assert spawns_apply(now=at + timedelta(minutes=41)) == []  # once


def test_blackout_dates_and_the_next_spawns(nightly):
    boss, schedule = nightly
    spawn_schedule_save(schedule=schedule, fields={"blackout_dates": ["2027-01-12", "2027-01-11"]})
    now = utc(2027, 1, 10, 12)
    listed = spawns_upcoming(now=now, days=4)
    assert wall([s.at for s in listed]) == ["01-13 02:30+0100", "01-14 02:30+0100"]
    assert listed[0].ends_at == listed[0].at + timedelta(hours=1)
    assert boss_next_spawn_at(boss=boss, now=now) == utc(2027, 1, 13, 1, 30)
    spawns_apply(now=utc(2027, 1, 11, 1, 31))  # a blackout night: nothing
    assert not SpawnOccurrence.objects.exists()
    spawn_schedule_save(schedule=schedule, fields={"enabled": False})
    assert boss_next_spawn_at(boss=boss, now=now) is None


def test_a_worker_killed_mid_spawn_is_finished_by_a_later_pass(nightly, monkeypatch):
    boss, _ = nightly
    first = utc(2027, 1, 10, 1, 30)
    spawns_apply(now=first + timedelta(seconds=1))
    second = first + timedelta(days=1)

    class Killed(BaseException):
        """The worker process dies here (after the reset, before the go-live)."""

    def die(**_):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(spawn, "boss_go_live", die)
        with pytest.raises(Killed):
            spawns_apply(now=second + timedelta(seconds=1))
    boss.refresh_from_db()
    assert (boss.fight, boss.status) == (2, "draft")  # reset done, never went live
    occurrence = SpawnOccurrence.objects.get(at=second)
    assert occurrence.status == OccurrenceStatus.CLAIMED and occurrence.fight == 2
    assert spawns_apply(now=second + timedelta(seconds=10)) == []  # its lease still holds
    done = spawns_apply(now=second + spawn.LEASE + timedelta(seconds=2))
    assert len(done) == 1 and "spawned" in done[0], done
    boss.refresh_from_db()
    assert (boss.fight, boss.status) == (2, "live")  # the same fight: not reset a second time
    occurrence.refresh_from_db()
    assert (occurrence.status, occurrence.attempts) == (OccurrenceStatus.SPAWNED, 2)


def test_a_schedule_applies_its_template_to_each_fight(nightly):
    boss, schedule = nightly
    template = template_save(template=None, fields={"name": "Hydra", "slug": "hydra-t", "max_hp": 77_777})
    spawn_schedule_save(schedule=schedule, fields={"template": template})
    spawns_apply(now=utc(2027, 1, 10, 1, 31))
    assert BossEncounter.objects.get(pk=boss.pk).max_hp == 77_777
    template_save(template=template, fields={"max_hp": 88_888})
    spawns_apply(now=utc(2027, 1, 11, 1, 31))
    configs = dict(FightConfig.objects.filter(boss=boss).values_list("fight", "config__max_hp"))
    assert configs == {1: 77_777, 2: 88_888}


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"rule": "FREQ=SOMETIMES"}, "rule"),
        ({"rule": "DTSTART:20270101T000000\nRRULE:FREQ=DAILY"}, "rule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"blackout_dates": ["24/12/2027"]}, "blackout_dates"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(nightly, fields, field):
    _, schedule = nightly
    with pytest.raises(InvalidInput) as refused:
        spawn_schedule_save(schedule=schedule, fields=fields)
    assert refused.value.extra.get("field") == field


def test_the_next_spawn_waits_for_the_previous_fight_s_victory(nightly, make_session):
    from bosses.sagas.victory import boss_victory_run
    from bosses.services import boss_tick
    from tests.support.authority import delta_ingest

    boss, _ = nightly
    first = utc(2027, 1, 10, 1, 30)
    spawns_apply(now=first + timedelta(seconds=1))
    session = make_session("eu-1")
    delta_ingest(
        boss_id=boss.pk,
        shard_key=session.shard_key,
        epoch=session.epoch,
        seq=1,
        amount=boss.max_hp,
        breakdown={"alice": boss.max_hp},
    )
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    second = first + timedelta(days=1)
    spawns_apply(now=second + timedelta(seconds=1))  # the death is not settled yet
    occurrence = SpawnOccurrence.objects.get(at=second)
    assert occurrence.status == OccurrenceStatus.CLAIMED and "victory saga" in occurrence.detail
    boss.refresh_from_db()
    assert boss.fight == 1
    boss_victory_run(boss_id=boss.pk, fight=1)
    spawns_apply(now=second + timedelta(seconds=2))  # the next pass finishes it
    occurrence.refresh_from_db()
    boss.refresh_from_db()
    assert (occurrence.status, occurrence.fight, boss.fight, boss.status) == ("spawned", 2, 2, "live")
    assert boss.rewards.filter(fight=1).count() == 1  # fight 1's rewards were granted before the reset
