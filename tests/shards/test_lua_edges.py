"""Edges of the Lua scripts: what a session may hold is capped like one delta, and a tick that
fails leaves every buffer where it was."""

from __future__ import annotations

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bosses.sagas.crash import session_fence
from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core import authority, keys
from core.errors import InvalidInput
from core.limits import MAX_DELTA_AMOUNT, MAX_HELD_AMOUNT
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = pytest.mark.django_db


def test_a_session_holds_at_most_one_delta(make_boss, make_session):
    assert MAX_HELD_AMOUNT == MAX_DELTA_AMOUNT
    boss = make_boss(max_hp=2**50, crash_policy="fair")
    boss_go_live(boss=boss)
    s = make_session()
    beat = heartbeat_record(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        pending=MAX_HELD_AMOUNT,
        inflight_seq=1,
        inflight_amount=MAX_HELD_AMOUNT,
    )
    assert beat.held == MAX_HELD_AMOUNT
    with pytest.raises(InvalidInput):
        heartbeat_record(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, pending=MAX_HELD_AMOUNT + 1)
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert saga.amount == MAX_HELD_AMOUNT
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok and report.applied == MAX_HELD_AMOUNT, report.problems


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pending=st.integers(0, MAX_HELD_AMOUNT),
    inflight=st.integers(0, MAX_HELD_AMOUNT),
    accepted_first=st.booleans(),
)
def test_held_is_what_was_reported_and_never_above_the_cap(
    make_boss, make_session, pending, inflight, accepted_first
):
    boss = make_boss(max_hp=2**50)
    boss_go_live(boss=boss)
    s = make_session()
    if accepted_first and inflight:
        delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=inflight)
    beat = heartbeat_record(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        pending=pending,
        inflight_seq=1 if inflight else 0,
        inflight_amount=inflight,
    )
    expected = pending + (0 if accepted_first else inflight)
    assert beat.held == min(expected, MAX_HELD_AMOUNT)


def test_a_tick_that_fails_leaves_every_buffer_in_place(live_boss, make_session, r):
    s = make_session()
    delta_ingest(
        boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=70, breakdown={"a": 70}
    )
    k = keys.BossKeys(live_boss.pk)
    before = (r.hgetall(k.buf), r.hgetall(k.pbuf), r.hgetall(k.state), r.xlen(k.log))
    r.hset(k.state, "phases", "not json")  # a damaged field the tick must read
    with pytest.raises(redis.ResponseError):
        authority.run(r, authority.tick_call(boss_id=live_boss.pk, force=True))
    state = {**before[2], "phases": "not json"}
    assert (r.hgetall(k.buf), r.hgetall(k.pbuf), r.hgetall(k.state), r.xlen(k.log)) == (
        before[0],
        before[1],
        state,
        before[3],
    )
