"""The one saga pattern: both sagas record the same step shape; a saga that cannot complete fails."""

from __future__ import annotations

from datetime import datetime

import pytest
import redis
from django.urls import reverse

from bosses.models import RewardGrant, SagaRun, SagaStatus
from bosses.ops_selectors import ops_latest_sagas
from bosses.sagas.crash import (
    CRASH_MAX_ATTEMPTS,
    CRASH_SAGA_RESUME_AFTER_MS,
    CRASH_STEPS,
    crashed_sessions_scan,
    session_fence,
    shard_retire,
)
from bosses.sagas.runner import saga_failpoints, steps_done
from bosses.sagas.victory import (
    VICTORY_MAX_ATTEMPTS,
    VICTORY_STEPS,
    boss_victory_run,
    victory_saga_key,
    victory_sagas_resume,
)
from bosses.services import boss_go_live, boss_reset, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.clock import ManualClock, RedisClock
from core.errors import InvalidTransition
from core.redis import get_redis
from shards.models import Shard
from tests.bosses.sagas.support import crash_saga_left_running
from tests.support.authority import delta_ingest, heartbeat_record

STEPS_OF = {"victory": VICTORY_STEPS, "crash": CRASH_STEPS}
# What the runner writes in every step record. A set, not a list: PostgreSQL's jsonb does not
# keep key order, so the order a record was written in is not something to rely on.
RECORD_HEAD = {"step", "at", "ms"}


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def sess_args(boss, s):
    return dict(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch)


def defeat(boss, s):
    delta_ingest(
        **sess_args(boss, s), seq=1, amount=boss.max_hp + 5, breakdown={"alice": boss.max_hp, "bob": 5}
    )
    assert boss_tick(boss_id=boss.pk, force=True).defeated


# --- the same shape for both sagas ---------------------------------------------------------


def _victory(make_boss, make_session):
    boss = make_boss(max_hp=100)
    boss_go_live(boss=boss)
    defeat(boss, make_session())
    return [boss_victory_run(boss_id=boss.pk, fight=boss.fight)]


def _crash(policy: str, reason: str):
    def scenario(make_boss, make_session):
        boss = make_boss(crash_policy=policy)
        boss_go_live(boss=boss)
        s = make_session()
        heartbeat_record(**sess_args(boss, s), pending=17)
        return [session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch, reason=reason)]

    return scenario


def _crash_retired(make_boss, make_session):
    boss = make_boss(crash_policy="harsh")
    boss_go_live(boss=boss)
    s, other = make_session("old-1"), make_session("old-1")
    heartbeat_record(**sess_args(boss, s), pending=3)
    heartbeat_record(**sess_args(boss, other), pending=4)
    assert shard_retire(shard=Shard.objects.get(key="old-1")) == 2
    return list(SagaRun.objects.filter(boss=boss, kind="crash"))


def _crash_resumed_by_the_scan(make_boss, make_session):
    boss = make_boss()
    boss_go_live(boss=boss)
    s = make_session()
    heartbeat_record(**sess_args(boss, s), pending=9)
    # left running by a process that died after fence.lua
    crash_saga_left_running(boss=boss, shard_key=s.shard_key, epoch=s.epoch, fenced=True)
    clock = ManualClock(RedisClock(get_redis()).now_ms() + CRASH_SAGA_RESUME_AFTER_MS + 1)
    return crashed_sessions_scan(clock=clock)


@pytest.mark.parametrize(
    "scenario",
    [
        _victory,
        _crash("fair", "crashed"),
        _crash("harsh", "crashed"),
        _crash("fair", "left"),
        _crash_retired,
        _crash_resumed_by_the_scan,
    ],
    ids=["victory", "crash-fair", "crash-harsh", "crash-left", "crash-retired", "crash-resumed"],
)
def test_both_sagas_record_their_steps_in_the_same_shape(make_boss, make_session, scenario):
    sagas = scenario(make_boss, make_session)
    assert sagas
    for saga in sagas:
        saga.refresh_from_db()
        assert saga.status == SagaStatus.COMPLETED and saga.finished_at and saga.attempts == 1
        assert steps_done(saga) == list(STEPS_OF[saga.kind])  # every step once, in order
        times = []
        for record in saga.steps:
            assert set(record) >= RECORD_HEAD, record
            assert isinstance(record["ms"], float) and record["ms"] >= 0, record
            times.append(datetime.fromisoformat(record["at"]))
            for value in record.values():  # flat: what the admin and the dashboard can show
                assert value is None or isinstance(value, str | int | float | bool), record
        assert times == sorted(times) and times[0] >= saga.started_at
        assert saga.finished_at >= times[-1]


def test_every_step_of_both_sagas_has_a_before_and_an_inside_failpoint():
    assert saga_failpoints(kind="victory", steps=VICTORY_STEPS) == [
        f"victory.{step}.{where}" for step in VICTORY_STEPS for where in ("before", "inside")
    ]
    assert len(saga_failpoints(kind="victory", steps=VICTORY_STEPS)) == 12  # names kept
    assert saga_failpoints(kind="crash", steps=CRASH_STEPS) == [
        f"crash.{step}.{where}" for step in CRASH_STEPS for where in ("before", "inside")
    ]


# --- failed: a saga that cannot complete ---------------------------------------------------


def test_a_victory_saga_whose_step_keeps_raising_fails_after_its_attempts(live_boss, make_session):
    s = make_session()
    for attempt in range(1, VICTORY_MAX_ATTEMPTS):
        with pytest.raises(InvalidTransition):  # the boss is alive: freeze refuses, every time
            boss_victory_run(boss_id=live_boss.pk, fight=live_boss.fight)
        saga = SagaRun.objects.get(boss=live_boss, kind="victory")
        assert (saga.status, saga.attempts, saga.steps) == (SagaStatus.RUNNING, attempt, [])
        assert saga.detail["error"]["attempt"] == attempt  # each attempt's error is kept

    saga = boss_victory_run(boss_id=live_boss.pk, fight=live_boss.fight)  # the last one it gets
    assert (saga.status, saga.attempts, saga.steps) == (SagaStatus.FAILED, VICTORY_MAX_ATTEMPTS, [])
    error = saga.detail["error"]
    assert (error["step"], error["type"], error["attempt"]) == ("freeze", "InvalidTransition", 25)
    assert "the authority is 'live'" in error["message"] and saga.finished_at
    assert any(f"saga {saga.key} failed at freeze" in p for p in boss_verify(boss=live_boss).problems)

    # Failed is final: the boss dying later neither re-runs it nor makes the sweep enqueue it.
    defeat(live_boss, s)
    again = boss_victory_run(boss_id=live_boss.pk, fight=live_boss.fight)
    assert (again.status, again.attempts) == (SagaStatus.FAILED, VICTORY_MAX_ATTEMPTS)
    assert victory_sagas_resume(stale_ms=0) == []
    assert not RewardGrant.objects.filter(boss=live_boss).exists()


def test_a_victory_saga_of_a_fight_that_was_reset_fails_at_once(make_boss, make_session):
    boss = make_boss(max_hp=100)
    boss_go_live(boss=boss)
    defeat(boss, make_session())
    fight = boss.fight
    boss_reset(boss=boss)  # the operator started the next fight before the saga ran
    saga = boss_victory_run(boss_id=boss.pk, fight=fight)
    assert (saga.status, saga.attempts, saga.key) == (
        SagaStatus.FAILED,
        1,
        victory_saga_key(boss_id=boss.pk, fight=fight),
    )
    assert (saga.detail["error"]["step"], saga.detail["error"]["type"]) == ("freeze", "SagaUnrecoverable")
    assert f"is in fight {fight + 1} now" in saga.detail["error"]["message"]
    assert not RewardGrant.objects.filter(boss=boss).exists()


def _session_whose_fence_fails(make_boss, make_session, *, crash_policy: str):
    """A live boss, a session holding 11 and its ``held`` hash broken: fence.lua raises WRONGTYPE.

    Returns the boss, the session, the Redis client, the boss's keys and the held hash to restore.
    """
    boss = make_boss(crash_policy=crash_policy)
    boss_go_live(boss=boss)
    s = make_session()
    heartbeat_record(**sess_args(boss, s), pending=11)
    r, k = get_redis(), keys.BossKeys(boss.pk)
    held = r.hgetall(k.held)
    r.delete(k.held)
    r.set(k.held, "not a hash")  # fence.lua fails on it (WRONGTYPE) every time
    return boss, s, r, k, held


def test_a_crash_saga_whose_fence_keeps_raising_fails_and_is_shown_as_failed(staff, make_boss, make_session):
    boss, s, r, k, held = _session_whose_fence_fails(make_boss, make_session, crash_policy="harsh")

    fence = dict(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    for attempt in range(1, CRASH_MAX_ATTEMPTS):
        with pytest.raises(redis.ResponseError):
            session_fence(**fence)
        saga = SagaRun.objects.get(boss=boss, kind="crash")
        assert (saga.status, saga.attempts, saga.detail["error"]["step"]) == (
            SagaStatus.RUNNING,
            attempt,
            "fence",
        )
    saga = session_fence(**fence)
    assert (saga.status, saga.attempts, saga.amount, saga.steps) == (
        SagaStatus.FAILED,
        CRASH_MAX_ATTEMPTS,
        0,
        [],
    )
    assert saga.detail["error"]["type"] == "ResponseError" and "WRONGTYPE" in saga.detail["error"]["message"]
    assert saga.detail["reason"] == "crashed"  # the saga's own detail is kept

    r.delete(k.held)
    r.hset(k.held, mapping=held)  # the cause is gone; the saga stays failed for an operator
    assert session_fence(**fence).attempts == CRASH_MAX_ATTEMPTS  # not run again
    clock = ManualClock(RedisClock(r).now_ms())
    for _ in range(6):  # 3 s of scans: silent, unfenced, yet nothing is retried or settled
        crashed_sessions_scan(clock=clock)
        clock.advance(500)
    saga.refresh_from_db()
    assert (saga.status, saga.attempts) == (SagaStatus.FAILED, CRASH_MAX_ATTEMPTS)
    assert not r.hexists(k.settled, f"{s.shard_key}:{s.epoch}")
    assert any(f"saga {saga.key} failed at fence" in p for p in boss_verify(boss=boss).problems)

    [row] = ops_latest_sagas(boss=boss)  # the dashboard's saga feed
    assert (row["status"], row["attempts"], row["steps"]) == ("failed", CRASH_MAX_ATTEMPTS, [])
    page = staff.get(reverse("admin:bosses_sagarun_change", args=[saga.pk])).content.decode()
    assert "Failed" in page and "WRONGTYPE" in page and "ResponseError" in page
    listing = staff.get(reverse("admin:bosses_sagarun_changelist")).content.decode()
    assert '<b style="color:#c62828">Failed</b>' in listing  # the status badge, in red
    under_boss = staff.get(reverse("admin:bosses_bossencounter_change", args=[boss.pk])).content.decode()
    assert saga.key in under_boss and "Failed" in under_boss


def test_an_error_that_goes_away_leaves_the_saga_running_for_the_next_run(make_boss, make_session):
    boss, s, r, k, held = _session_whose_fence_fails(make_boss, make_session, crash_policy="fair")
    with pytest.raises(redis.ResponseError):
        session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    r.delete(k.held)
    r.hset(k.held, mapping=held)
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert (saga.status, saga.attempts, saga.amount) == (SagaStatus.COMPLETED, 2, 11)
    assert saga.detail["error"]["attempt"] == 1  # the history of the failed attempt stays
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.recovered == report.applied == 11


def test_a_saga_whose_runs_all_died_fails_when_the_scan_would_resume_it_again(make_boss, make_session):
    boss = make_boss()
    boss_go_live(boss=boss)
    s = make_session()
    heartbeat_record(**sess_args(boss, s), pending=5)
    # every run so far was killed before it recorded anything
    saga = crash_saga_left_running(
        boss=boss, shard_key=s.shard_key, epoch=s.epoch, fenced=False, attempts=CRASH_MAX_ATTEMPTS
    )
    clock = ManualClock(RedisClock(get_redis()).now_ms() + CRASH_SAGA_RESUME_AFTER_MS + 1)
    [failed] = crashed_sessions_scan(clock=clock)
    saga.refresh_from_db()
    assert failed.pk == saga.pk and (saga.status, saga.attempts) == (SagaStatus.FAILED, CRASH_MAX_ATTEMPTS)
    error = saga.detail["error"]
    assert (error["step"], error["type"]) == ("fence", "AttemptsExhausted")
    assert f"gave up after {CRASH_MAX_ATTEMPTS} attempts" in error["message"]
