"""The tick pass visits only dirty bosses (docs/sync-tick.md): what marks a boss, what unmarks it,
partitions, and that nothing buffered is ever left behind or applied twice.

Passes are forced (``force=True``): a boss that just went live is inside its minimum tick
interval, and these tests are about which bosses a pass visits, not about the interval
(tests/bosses/test_sync_tick.py covers that).
"""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from bosses import services
from bosses.models import BossEncounter
from bosses.sagas.crash import session_fence
from bosses.services import (
    boss_end,
    boss_go_live,
    boss_pause,
    boss_reset,
    boss_resume,
    boss_tick_all,
    tick_partition_buckets,
)
from bosses.verification import boss_verify
from core import authority, keys
from core.errors import InvalidInput
from liveops.celery import _build_beat_schedule
from tests.bosses.test_sync_tick import broker_messages
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = pytest.mark.django_db


def live_bosses(make_boss, n: int, **fields) -> list[BossEncounter]:
    bosses = [make_boss(tick_interval_ms=100, **fields) for _ in range(n)]
    for boss in bosses:
        boss_go_live(boss=boss)
    return bosses


def marked(r) -> set[int]:
    return {int(i) for b in range(keys.TICK_BUCKETS) for i in r.smembers(keys.dirty_key(b))}


def hit(boss, session, seq: int, amount: int) -> None:
    delta_ingest(boss_id=boss.pk, shard_key=session.shard_key, epoch=session.epoch, seq=seq, amount=amount)


def test_idle_live_bosses_cost_no_tick_and_damaged_ones_are_applied_once(make_boss, make_session, r):
    bosses = live_bosses(make_boss, 40)
    assert marked(r) == set() and boss_tick_all(force=True) == {}
    s = make_session()
    for seq, boss in enumerate(bosses[:3], start=1):
        hit(boss, s, 1, 100 * seq)
    assert marked(r) == {b.pk for b in bosses[:3]}
    applied = {b: out.applied for b, out in boss_tick_all(force=True).items()}
    assert applied == {bosses[0].pk: 100, bosses[1].pk: 200, bosses[2].pk: 300}
    assert marked(r) == set() and boss_tick_all(force=True) == {}
    for boss in bosses:
        report = boss_verify(boss=boss)
        assert report.ok and report.buffered == 0, report.problems


def test_the_pass_publishes_the_state_it_applied(make_boss, make_session, r):
    [boss] = live_bosses(make_boss, 1, max_hp=1_000, phases="50:Half takes 60%")
    pubsub = r.pubsub()
    pubsub.subscribe(keys.state_channel(boss.pk))
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    hit(boss, make_session(), 1, 600)
    boss_tick_all(force=True)
    state = json.loads(pubsub.get_message(timeout=2)["data"])
    phase = json.loads(pubsub.get_message(timeout=2)["data"])
    assert state == {
        "type": "state",
        "boss": boss.slug,
        "hp": 400,
        "max_hp": 1_000,
        "version": 2,
        "status": "live",
        "phase": "Half",
        "phase_index": 1,
        "ts": state["ts"],
        "gen": 0,
        "damage_taken_bp": 6_000,  # the phase the tick entered takes 60 % from the next tick on
        "regen_per_s": 0,
    }
    assert phase["type"] == "phase" and phase["phase"] == "Half" and phase["version"] == 2
    assert state == {**authority.read_state(r, boss.pk).as_message(), "ts": state["ts"]}
    pubsub.close()


def test_a_paused_boss_keeps_its_mark_and_is_applied_after_resume(make_boss, make_session, r):
    [boss] = live_bosses(make_boss, 1)
    hit(boss, make_session(), 1, 70)
    boss_pause(boss=boss)
    assert boss_tick_all(force=True)[boss.pk].code == "idle"
    assert marked(r) == {boss.pk}  # its buffer waits for resume
    boss_resume(boss=boss)
    assert boss_tick_all(force=True)[boss.pk].applied == 70
    assert marked(r) == set()


def test_a_fair_fence_marks_the_boss_for_the_recovered_damage(make_boss, make_session, r):
    [boss] = live_bosses(make_boss, 1, crash_policy="fair")
    s = make_session()
    heartbeat_record(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, pending=40)
    assert marked(r) == set()  # a heartbeat buffers nothing
    session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert marked(r) == {boss.pk}
    assert boss_tick_all(force=True)[boss.pk].applied == 40
    assert boss_verify(boss=boss).ok


def test_a_death_tick_that_crashed_before_its_follow_up_is_recovered_by_the_pass(
    make_boss, make_session, r, monkeypatch
):
    [boss] = live_bosses(make_boss, 1, max_hp=10)
    hit(boss, make_session(), 1, 10)
    # The worker dies after the Lua death tick, before enqueuing the saga: the mark stays.
    assert authority.run(r, authority.tick_call(boss_id=boss.pk, force=True)).defeated
    assert marked(r) == {boss.pk}
    boss_tick_all(force=True)  # too early to call it a crash: a concurrent death tick may be finishing
    assert broker_messages("sagas") == [] and marked(r) == {boss.pk}
    monkeypatch.setattr(services, "VICTORY_RECOVERY_AFTER_MS", -1)
    boss_tick_all(force=True)
    boss_tick_all(force=True)
    assert [m["headers"]["task"] for m in broker_messages("sagas")] == ["bosses.victory_saga"]
    assert marked(r) == set() and not r.sismember(keys.LIVE_BOSSES, boss.pk)


def test_ended_and_reset_bosses_are_unmarked(make_boss, make_session, r):
    ended, reset = live_bosses(make_boss, 2)
    s = make_session()
    hit(ended, s, 1, 5)
    hit(reset, s, 1, 5)
    boss_pause(boss=ended)  # ended from paused: boss_end applies a live boss's buffer first
    boss_end(boss=ended)
    boss_pause(boss=reset)
    boss_reset(boss=reset)
    assert marked(r) == {ended.pk, reset.pk}
    outcomes = boss_tick_all(force=True)
    assert (outcomes[ended.pk].status, outcomes[reset.pk].code) == ("expired", "no_boss")
    assert marked(r) == set()


def test_ending_a_live_boss_applies_what_it_had_accepted_first(make_boss, make_session, r):
    """The tick skips a boss that is over: damage accepted before the end would stay buffered
    for good (verify_boss reports such a buffer), so the end applies it first."""
    [boss] = live_bosses(make_boss, 1)
    hit(boss, make_session(), 1, 5)
    boss_end(boss=boss)
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert (report.status, report.applied, report.buffered) == ("expired", 5, 0)


@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 256])
def test_partitions_own_every_bucket_exactly_once(partitions):
    owned = [b for p in range(partitions) for b in tick_partition_buckets(partition=p, partitions=partitions)]
    assert sorted(owned) == list(range(keys.TICK_BUCKETS))


@pytest.mark.parametrize("partition,partitions", [(-1, 2), (2, 2), (0, 0)])
def test_a_partition_out_of_range_is_refused(partition, partitions):
    with pytest.raises(InvalidInput):
        tick_partition_buckets(partition=partition, partitions=partitions)


def test_each_partition_ticks_only_its_own_bosses(make_boss, make_session, r):
    bosses = live_bosses(make_boss, 6)
    s = make_session()
    for boss in bosses:
        hit(boss, s, 1, 1)
    first = set(boss_tick_all(partition=0, partitions=2, force=True))
    assert first == {b.pk for b in bosses if keys.tick_bucket(b.pk) % 2 == 0}
    assert marked(r) == {b.pk for b in bosses} - first
    assert set(boss_tick_all(partition=1, partitions=2, force=True)) == {b.pk for b in bosses} - first
    assert marked(r) == set()


@pytest.mark.parametrize("partitions", [1, 3])
def test_beat_schedules_one_tick_task_per_partition(partitions):
    with override_settings(TICK_PARTITIONS=partitions):
        schedule = _build_beat_schedule()
    ticks = [e for e in schedule.values() if e["task"] == "bosses.tick_live_bosses"]
    assert sorted(e["kwargs"]["partition"] for e in ticks) == list(range(partitions))
    assert {e["kwargs"]["partitions"] for e in ticks} == {partitions}


def test_a_boss_inside_its_interval_keeps_its_mark_until_a_later_pass(make_boss, make_session, r):
    [boss] = live_bosses(make_boss, 1)
    BossEncounter.objects.filter(pk=boss.pk).update(tick_interval_ms=10_000)
    r.hset(keys.BossKeys(boss.pk).state, "min_tick_ms", 8_000)  # what go-live seeds for 10 s
    hit(boss, make_session(), 1, 9)
    assert boss_tick_all()[boss.pk].code == "early"
    assert marked(r) == {boss.pk}
    assert boss_tick_all(force=True)[boss.pk].applied == 9
    assert marked(r) == set()
