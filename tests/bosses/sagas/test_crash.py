"""Crash detection: what counts as held, silent shards, saga records, resume, verify_boss tampering."""

from __future__ import annotations

import time

import pytest

from bosses.models import SagaRun, SagaStatus
from bosses.sagas.crash import CRASH_SAGA_RESUME_AFTER_MS, CRASH_STEPS, crashed_sessions_scan, session_fence
from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.clock import ManualClock, RedisClock
from core.errors import Fenced
from core.redis import get_redis
from shards.models import Shard, ShardStatus
from tests.bosses.sagas.support import crash_saga_left_running
from tests.support.authority import delta_ingest, heartbeat_record

TIMEOUT_MS = 300


@pytest.fixture
def quick_boss(make_boss):
    def make(policy="fair"):
        boss = make_boss(crash_policy=policy, heartbeat_interval_ms=100, heartbeat_timeout_ms=TIMEOUT_MS)
        boss_go_live(boss=boss)
        return boss

    return make


def args(boss, s):
    return dict(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch)


def last_sign_of_life(boss, s) -> int:
    """The Redis TIME (ms) of the session's last heartbeat or accepted delta."""
    return int(get_redis().hget(keys.BossKeys(boss.pk).hb, f"{s.shard_key}:{s.epoch}"))


def test_deltas_accepted_after_a_heartbeat_shrink_what_a_crash_settles(quick_boss, make_session):
    boss, s = quick_boss("fair"), make_session()
    heartbeat_record(**args(boss, s), pending=50, inflight_seq=1, inflight_amount=30)
    assert int(get_redis().hget(keys.BossKeys(boss.pk).held, f"{s.shard_key}:{s.epoch}")) == 80
    delta_ingest(**args(boss, s), seq=1, amount=30)  # the in-flight delta lands after the beat
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert saga.amount == 50  # only the pending part; the 30 was accepted, never twice
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.applied == 80 and report.recovered == 50


def test_an_in_flight_delta_already_accepted_is_not_held(quick_boss, make_session):
    boss, s = quick_boss("harsh"), make_session()
    delta_ingest(**args(boss, s), seq=1, amount=30)  # accepted; the ack was lost on the way back
    assert heartbeat_record(**args(boss, s), pending=5, inflight_seq=1, inflight_amount=30).held == 5
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert (saga.policy, saga.amount) == ("harsh", 5)
    with pytest.raises(Fenced) as err:
        heartbeat_record(**args(boss, s), pending=5)
    assert err.value.extra == {"last_seq": 1, "policy": "harsh", "settled": 5}


def test_shard_that_heartbeats_but_never_sends_damage(quick_boss, make_session):
    """Alive as long as it heartbeats (nothing is settled); its reported pending is what a
    crash saga settles once it goes silent."""
    boss, s = quick_boss("fair"), make_session()
    # Heartbeats are stamped with Redis TIME, so while it beats, real time passes (3 timeouts).
    deadline = time.monotonic() + 3 * TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        heartbeat_record(**args(boss, s), pending=12)
        assert crashed_sessions_scan() == []
        time.sleep(0.05)
    assert boss_verify(boss=boss).accepted == 0  # heartbeats alone never apply damage
    # Then it falls silent: the scanner's clock moves on from its last heartbeat, none comes.
    clock = ManualClock(last_sign_of_life(boss, s))
    clock.advance(TIMEOUT_MS)
    assert crashed_sessions_scan(clock=clock) == []  # silent exactly the timeout: not yet
    clock.advance(1)
    [saga] = crashed_sessions_scan(clock=clock)
    assert (saga.policy, saga.amount) == ("fair", 12)
    assert saga.detail["silent_ms"] == TIMEOUT_MS + 1
    assert Shard.objects.get(key=s.shard_key).status == ShardStatus.CRASHED


def test_shard_that_sends_damage_but_no_heartbeats(quick_boss, make_session):
    """An accepted delta is a sign of life; once it stops, nothing is known to be held, so the
    saga settles 0 and fences the epoch: a late delta is refused, never applied twice."""
    boss, s = quick_boss("fair"), make_session()
    seq, deadline = 0, time.monotonic() + 3 * TIMEOUT_MS / 1000
    while time.monotonic() < deadline:  # deltas are stamped with Redis TIME: real time passes
        seq += 1
        delta_ingest(**args(boss, s), seq=seq, amount=10)
        assert crashed_sessions_scan() == []
        time.sleep(0.05)
    clock = ManualClock(last_sign_of_life(boss, s))
    clock.advance(TIMEOUT_MS)
    assert crashed_sessions_scan(clock=clock) == []
    clock.advance(1)
    [saga] = crashed_sessions_scan(clock=clock)
    assert saga.detail["silent_ms"] == TIMEOUT_MS + 1
    assert saga.amount == 0 and saga.detail["last_seq"] == seq
    with pytest.raises(Fenced):
        delta_ingest(**args(boss, s), seq=seq + 1, amount=10)
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok and report.applied == 10 * seq


def test_saga_record_carries_steps_amounts_outcome_and_timings(quick_boss, make_session):
    boss, s = quick_boss("harsh"), make_session()
    other = make_session(s.shard_key)  # a second process of the same shard, still alive
    heartbeat_record(**args(boss, s), pending=7)
    heartbeat_record(**args(boss, other), pending=0)
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch, silent_ms=999)
    assert (
        saga.status == SagaStatus.COMPLETED
        and saga.key == f"crash:{boss.pk}:{boss.fight}:{s.shard_key}:{s.epoch}"
    )
    assert [st["step"] for st in saga.steps] == list(CRASH_STEPS) == ["fence", "settle", "mark_shard"]
    assert saga.steps[0] == {**saga.steps[0], "outcome": "fenced", "policy": "harsh", "amount": 7}
    assert saga.steps[1] == {**saga.steps[1], "outcome": "discarded", "amount": 7}
    assert all("at" in st and st["ms"] >= 0 for st in saga.steps)
    assert saga.steps[2] == {**saga.steps[2], "crashed": False, "other_sessions": 1}
    assert saga.detail["silent_ms"] == 999 and saga.detail["elapsed_ms"] >= 0 and saga.finished_at
    assert saga.attempts == 1
    assert Shard.objects.get(key=s.shard_key).status == ShardStatus.ONLINE  # one session still up


def test_scan_finishes_a_crash_saga_left_running_by_a_dead_process(quick_boss, make_session):
    boss, s = quick_boss("fair"), make_session()
    heartbeat_record(**args(boss, s), pending=40)
    # The process died after recording the saga and running fence.lua, before completing it.
    saga = crash_saga_left_running(boss=boss, shard_key=s.shard_key, epoch=s.epoch, fenced=True)
    assert any("is running" in p for p in boss_verify(boss=boss).problems)
    clock = ManualClock(RedisClock(get_redis()).now_ms())
    assert crashed_sessions_scan(clock=clock) == []  # it may still be running somewhere: wait
    saga.refresh_from_db()
    assert saga.status == SagaStatus.RUNNING and saga.attempts == 0
    clock.advance(CRASH_SAGA_RESUME_AFTER_MS + 1)
    [resumed] = crashed_sessions_scan(clock=clock)
    saga.refresh_from_db()
    assert resumed.pk == saga.pk and saga.status == SagaStatus.COMPLETED and saga.amount == 40
    assert saga.steps[0]["outcome"] == "already"  # the settlement was not made twice
    assert saga.attempts == 1
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.recovered == 40 and report.applied == 40


def _tamper_saga_amount(boss, sess):
    SagaRun.objects.filter(boss=boss, kind="crash").update(amount=41)


def _tamper_saga_policy(boss, sess):
    SagaRun.objects.filter(boss=boss, kind="crash").update(policy="harsh")


def _delete_saga(boss, sess):
    SagaRun.objects.filter(boss=boss, kind="crash").delete()


def _tamper_settlement(boss, sess):
    get_redis().hset(keys.BossKeys(boss.pk).settled, sess, "fair:99")


def _forge_saga(boss, sess):
    SagaRun.objects.create(
        key="crash:forged",
        kind="crash",
        boss=boss,
        fight=boss.fight,
        shard_key="ghost",
        epoch=1,
        policy="fair",
        amount=0,
        status="completed",
    )


@pytest.mark.parametrize(
    "tamper,problem",
    [
        (_tamper_saga_amount, "records fair:41 != settlement fair:40"),
        (_tamper_saga_policy, "records harsh:40"),
        (_delete_saga, "has no crash saga record"),
        (_tamper_settlement, "recovered 40 != fair settlements 99"),
        (_forge_saga, "ghost:1 has no settlement"),
    ],
)
def test_verify_boss_checks_recovered_and_discarded_against_saga_records(
    quick_boss, make_session, tamper, problem
):
    boss, s, h = quick_boss("fair"), make_session(), make_session()
    heartbeat_record(**args(boss, s), pending=40)
    heartbeat_record(**args(boss, h), pending=0)
    session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    boss_tick(boss_id=boss.pk, force=True)
    assert boss_verify(boss=boss).ok
    tamper(boss, f"{s.shard_key}:{s.epoch}")
    report = boss_verify(boss=boss)
    assert not report.ok
    assert any(problem in p for p in report.problems), report.problems


@pytest.mark.django_db(transaction=True)
def test_scan_counts_no_silence_while_the_database_was_unreachable(quick_boss, make_session):
    """A scan whose SQL read failed saw nothing: it records no scan, so the next one finds the
    gap and gives every session a full timeout from its end (docs/faults.md)."""
    from django.db import OperationalError

    from tests.support.database import database_unreachable

    boss, s = quick_boss("harsh"), make_session()
    heartbeat_record(**args(boss, s), pending=40)
    clock = ManualClock(last_sign_of_life(boss, s))
    assert crashed_sessions_scan(clock=clock) == []
    with database_unreachable():
        for _ in range(6):  # 3 s of scans every 500 ms, each failing on its SQL read
            clock.advance(500)
            with pytest.raises(OperationalError):
                crashed_sessions_scan(clock=clock)
    clock.advance(100)
    # Silent 3.1 s by its stamp, but the scan was blind for all of it: not fenced.
    assert crashed_sessions_scan(clock=clock) == []
    clock.advance(TIMEOUT_MS)
    assert crashed_sessions_scan(clock=clock) == []
    clock.advance(1)  # a full timeout after the blind spot ended: really gone
    [saga] = crashed_sessions_scan(clock=clock)
    assert saga.detail["silent_ms"] == TIMEOUT_MS + 1 and saga.amount == 40
