"""The platform buffer: exactly-once acceptance and bad input that changes nothing."""

from __future__ import annotations

import math

import pytest

from bosses.sagas.crash import session_fence
from bosses.selectors import boss_ledger
from bosses.services import boss_pause, boss_resume, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.errors import (
    AuthorityUnavailable,
    BossNotLive,
    Fenced,
    InvalidAmount,
    InvalidInput,
    SeqGap,
    UnknownBoss,
    UnknownEpoch,
    UnknownShard,
)
from tests.support.authority import delta_ingest, heartbeat_record
from tests.support.processes import free_port
from tests.support.topologies import topology_env, use_topology


def snapshot(boss):
    ledger = boss_ledger(boss_id=boss.pk)
    return ledger.state, ledger.buffers, ledger.settled, ledger.log


def test_accepts_each_seq_once_and_acks_duplicates(live_boss, make_session):
    s = make_session()
    first = delta_ingest(
        boss_id=live_boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        seq=1,
        amount=100,
        breakdown={"alice": 60, "bob": 40},
    )
    again = delta_ingest(
        boss_id=live_boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        seq=1,
        amount=100,
        breakdown={"alice": 60, "bob": 40},
    )
    assert (first.duplicate, again.duplicate) == (False, True)
    # a duplicate with another amount (hostile or buggy) is still only acknowledged
    assert delta_ingest(
        boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=999
    ).duplicate
    ledger = boss_ledger(boss_id=live_boss.pk)
    assert ledger.buffers == {f"{s.shard_key}:{s.epoch}": 100}
    assert ledger.number("accepted") == 100
    from core.redis import get_redis

    # per-player damage waits in pbuf with the buffer; the tick moves it to players (and logs it)
    assert get_redis().hgetall(keys.BossKeys(live_boss.pk).pbuf) == {"alice": "60", "bob": "40"}


def test_gap_is_refused_and_resend_in_order_is_exact(live_boss, make_session):
    s = make_session()
    args = dict(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch)
    with pytest.raises(SeqGap) as err:
        delta_ingest(**args, seq=2, amount=5)
    assert err.value.extra["last_seq"] == 0
    delta_ingest(**args, seq=1, amount=7)
    delta_ingest(**args, seq=2, amount=5)
    boss_tick(boss_id=live_boss.pk, force=True)
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == 12 and report.hp == live_boss.max_hp - 12


def test_sessions_of_one_shard_dedupe_independently(live_boss, make_session):
    a = make_session("eu-1")
    b = make_session("eu-1")  # a second process serving the same shard
    assert b.epoch == a.epoch + 1
    for s in (a, b):
        delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=10)
    assert boss_ledger(boss_id=live_boss.pk).number("accepted") == 20


BAD_AMOUNTS = [0, -1, 1.5, float("nan"), math.inf, True, False, "10", None, [], {}, 2**53 + 1, 2**60]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
def test_bad_amounts_raise_typed_errors_and_change_nothing(live_boss, make_session, amount):
    s = make_session()
    before = snapshot(live_boss)
    with pytest.raises(InvalidAmount) as err:
        delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=amount)
    assert "amount" in str(err.value)
    assert snapshot(live_boss) == before


@pytest.mark.parametrize(
    "field,value,error",
    [
        ("seq", 0, InvalidInput),
        ("seq", -3, InvalidInput),
        ("seq", 1.0, InvalidInput),
        ("seq", "1", InvalidInput),
        ("epoch", 0, InvalidInput),
        ("epoch", True, InvalidInput),
        ("epoch", 10**6, UnknownEpoch),
        ("shard_key", "no-such-shard", UnknownShard),
        ("shard_key", "BAD KEY!", UnknownShard),
        ("shard_key", 42, UnknownShard),
        ("boss_id", 987654, UnknownBoss),
        ("breakdown", {"alice": 101}, InvalidAmount),
        ("breakdown", {"": 1}, InvalidInput),
        ("breakdown", {"alice": -1}, InvalidAmount),
        ("breakdown", ["alice"], InvalidInput),
        ("breakdown", {f"p{i}": 1 for i in range(1001)}, InvalidInput),
    ],
)
def test_bad_fields_raise_typed_errors_and_change_nothing(live_boss, make_session, field, value, error):
    s = make_session()
    args = dict(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=100)
    args[field] = value
    before = snapshot(live_boss)
    with pytest.raises(error):
        delta_ingest(**args)
    assert snapshot(live_boss) == before


def test_not_live_boss_refuses_and_keeps_buffers(live_boss, make_session):
    s = make_session()
    args = dict(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch)
    delta_ingest(**args, seq=1, amount=50)
    boss_pause(boss=live_boss)
    before = snapshot(live_boss)
    with pytest.raises(BossNotLive):
        delta_ingest(**args, seq=2, amount=50)
    assert boss_tick(boss_id=live_boss.pk, force=True).code == "idle"  # paused: nothing applied
    assert snapshot(live_boss) == before
    # a retry of an already-accepted seq is still acknowledged while paused
    assert delta_ingest(**args, seq=1, amount=50).duplicate
    boss_resume(boss=live_boss)
    delta_ingest(**args, seq=2, amount=50)
    boss_tick(boss_id=live_boss.pk, force=True)
    report = boss_verify(boss=live_boss)
    assert report.ok and report.applied == 100


def test_draft_boss_has_no_authority(make_boss, make_session):
    boss = make_boss()
    s = make_session()
    with pytest.raises(UnknownBoss):
        delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=1)


@pytest.mark.parametrize("policy", ["fair", "harsh"])
def test_fenced_session_is_refused_and_its_held_damage_settled_once(make_boss, make_session, policy):
    from bosses.services import boss_go_live

    boss = make_boss(crash_policy=policy)
    boss_go_live(boss=boss)
    s = make_session()
    args = dict(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch)
    delta_ingest(**args, seq=1, amount=10)
    # holds 7 unsent plus seq 2 (amount 3) in flight
    assert heartbeat_record(**args, pending=7, inflight_seq=2, inflight_amount=3).held == 10
    delta_ingest(**args, seq=2, amount=3)  # the in-flight delta lands after the heartbeat
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert saga.amount == 7 and saga.policy == policy
    assert session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch).amount == 7  # re-run
    with pytest.raises(Fenced) as err:
        delta_ingest(**args, seq=3, amount=7)
    # a fair settlement also says who it credited (nobody here: no breakdown was reported)
    credited = {"credited": {}} if policy == "fair" else {}
    assert err.value.extra == {"last_seq": 2, "policy": policy, "settled": 7, **credited}
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    expected_applied = 13 + (7 if policy == "fair" else 0)
    assert report.applied == expected_applied
    assert (report.recovered, report.discarded) == ((7, 0) if policy == "fair" else (0, 7))


def test_an_unreachable_authority_on_an_auto_topology_is_authority_unavailable(live_boss, make_session):
    """REDIS_CLUSTER=auto asks the node what it is when the first client is made: a node that
    does not answer is the typed outage (the socket's authority_unavailable), not a bare
    redis-py error."""
    s = make_session()
    args = dict(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch)
    env = topology_env(redis_url=f"redis://127.0.0.1:{free_port()}/0", broker_url="", REDIS_CLUSTER="auto")
    with use_topology(env):
        with pytest.raises(AuthorityUnavailable):
            delta_ingest(**args, seq=1, amount=10)
        with pytest.raises(AuthorityUnavailable):
            heartbeat_record(**args, pending=0)
    assert delta_ingest(**args, seq=1, amount=10).duplicate is False  # nothing was taken
