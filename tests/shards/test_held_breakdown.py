"""The held breakdown: heartbeats store who holds a session's unacknowledged damage, accepted
deltas keep it consistent, and a fair crash saga credits those players exactly once.

Real Redis, the real scripts (heartbeat.lua, ingest.lua, fence.lua, tick.lua) through the
services and the crash saga.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bosses.models import BossEvent
from bosses.sagas.crash import session_fence
from bosses.services import boss_go_live, boss_tick, event_log_archive
from bosses.verification import boss_verify
from core import authority, keys
from core.errors import InvalidAmount, InvalidInput
from core.limits import MAX_BREAKDOWN_ENTRIES, MAX_HELD_AMOUNT
from tests.support.authority import delta_ingest, heartbeat_record
from worldboss_sdk.buffer import LocalBuffer

pytestmark = pytest.mark.django_db

MAX_HP = 10_000_000


def fair_boss(make_boss, policy: str = "fair"):
    boss = make_boss(max_hp=MAX_HP, crash_policy=policy)
    boss_go_live(boss=boss)
    return boss


def stored(r, boss, s) -> list:
    raw = r.hget(keys.BossKeys(boss.pk).heldby, keys.session_id(s.shard_key, s.epoch))
    return json.loads(raw) if raw else []


def players(r, boss) -> dict[str, int]:
    return {p: int(v) for p, v in r.hgetall(keys.BossKeys(boss.pk).players).items()}


def beat(boss, s, pending, breakdown=None, inflight_seq=0, inflight_amount=0):
    return heartbeat_record(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        pending=pending,
        inflight_seq=inflight_seq,
        inflight_amount=inflight_amount,
        breakdown=breakdown,
    )


def test_fair_fence_credits_the_breakdown_once_and_the_archive_keeps_it(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    delta_ingest(
        boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=100, breakdown={"a": 100}
    )
    out = beat(boss, s, 300, {"a": 50, "b": 200}, inflight_seq=2, inflight_amount=40)
    assert (out.held, out.attributed) == (340, 250)
    assert stored(r, boss, s) == ["a", 50, "b", 200]

    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert (saga.policy, saga.amount) == ("fair", 340)
    assert saga.detail["credited"] == {"players": 2, "amount": 250}
    assert saga.steps[0]["credited_players"] == 2 and saga.steps[0]["credited_amount"] == 250
    boss_tick(boss_id=boss.pk, force=True)
    assert players(r, boss) == {"a": 150, "b": 200}  # the other 90 are the shard's only
    assert int(r.hget(keys.BossKeys(boss.pk).contrib, s.shard_key)) == 440

    # A re-run fence reports the first settlement and its credit, and credits nothing again.
    again = authority.run(
        r, authority.fence_call(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, policy="fair")
    )
    assert (again.code, again.amount, again.credited_players, again.credited_amount) == (
        "already",
        340,
        2,
        250,
    )
    assert session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch).amount == 340
    boss_tick(boss_id=boss.pk, force=True)
    assert players(r, boss) == {"a": 150, "b": 200}

    event_log_archive(boss=boss)
    archived: dict[str, int] = {}
    for event in BossEvent.objects.filter(boss=boss):
        for p, d in (event.players or {}).items():
            archived[p] = archived.get(p, 0) + int(d)
    assert archived == {"a": 150, "b": 200}
    report = boss_verify(boss=boss)
    assert report.ok and report.recovered == 340, report.problems


def test_harsh_fence_credits_nothing(make_boss, make_session, r):
    boss = fair_boss(make_boss, "harsh")
    s = make_session()
    beat(boss, s, 300, {"a": 300})
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert (saga.policy, saga.amount) == ("harsh", 300)
    assert saga.detail["credited"] == {"players": 0, "amount": 0}
    boss_tick(boss_id=boss.pk, force=True)
    assert players(r, boss) == {} and stored(r, boss, s) == []
    assert not r.hgetall(keys.BossKeys(boss.pk).pbuf)


def test_a_heartbeat_without_breakdown_clears_the_stored_one(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    beat(boss, s, 300, {"a": 300})
    assert beat(boss, s, 280).attributed == 0  # an older client: held only, as before
    assert stored(r, boss, s) == []
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert saga.amount == 280 and saga.detail["credited"] == {"players": 0, "amount": 0}


@pytest.mark.parametrize(
    ("breakdown", "error"),
    [
        ({"a": 301}, InvalidAmount),  # sum > held
        ({"a": 200, "b": 101}, InvalidAmount),
        ({"a": 0}, InvalidAmount),
        ({"a": -5}, InvalidAmount),
        ({"a": 1.5}, InvalidAmount),
        ({"a": "10"}, InvalidAmount),
        ({"a": True}, InvalidAmount),
        ({"bad id!": 10}, InvalidInput),
        ({"": 10}, InvalidInput),
        ({"x" * 65: 10}, InvalidInput),
        ([["a", 10]], InvalidInput),
        ("a:10", InvalidInput),
        ({f"p{i}": 1 for i in range(MAX_BREAKDOWN_ENTRIES + 1)}, InvalidInput),
    ],
)
def test_a_hostile_breakdown_is_refused_and_changes_nothing(make_boss, make_session, r, breakdown, error):
    boss = fair_boss(make_boss)
    s = make_session()
    beat(boss, s, 250, {"a": 100}, inflight_seq=1, inflight_amount=50)
    k = keys.BossKeys(boss.pk)
    before = (r.hgetall(k.held), r.hgetall(k.heldby), r.hgetall(k.hbase))
    with pytest.raises(error) as err:
        beat(boss, s, 250, breakdown, inflight_seq=1, inflight_amount=50)
    assert str(err.value.extra["field"]).startswith("breakdown")
    assert (r.hgetall(k.held), r.hgetall(k.heldby), r.hgetall(k.hbase)) == before


def test_the_breakdown_may_cover_the_in_flight_delta(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    assert beat(boss, s, 100, {"a": 100, "b": 50}, inflight_seq=1, inflight_amount=50).attributed == 150
    with pytest.raises(InvalidAmount):
        beat(boss, s, 100, {"a": 100, "b": 51}, inflight_seq=1, inflight_amount=50)


def test_a_breakdown_above_the_capped_held_is_cut_to_fit(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    out = beat(
        boss,
        s,
        MAX_HELD_AMOUNT,
        {"a": MAX_HELD_AMOUNT - 10, "b": 20},
        inflight_seq=1,
        inflight_amount=MAX_HELD_AMOUNT,
    )
    assert (out.held, out.attributed) == (MAX_HELD_AMOUNT, MAX_HELD_AMOUNT)
    assert stored(r, boss, s) == ["a", MAX_HELD_AMOUNT - 10, "b", 10]


def test_an_in_flight_delta_accepted_before_the_heartbeat_is_cut_from_its_end(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=60, breakdown={"c": 60})
    # The client had not seen the ack yet: it reports seq 1 in flight, its players last.
    out = beat(boss, s, 100, {"a": 70, "c": 60}, inflight_seq=1, inflight_amount=60)
    assert (out.held, out.attributed) == (100, 100)
    assert stored(r, boss, s) == ["a", 70, "c", 30]


def test_an_accepted_delta_after_the_heartbeat_takes_its_players_out(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    beat(boss, s, 100, {"a": 40, "b": 30, "c": 20}, inflight_seq=1, inflight_amount=60)
    # seq 1 (the in-flight one) lands with its own breakdown: those players leave the record.
    delta_ingest(
        boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=60, breakdown={"b": 30, "c": 5}
    )
    assert int(r.hget(keys.BossKeys(boss.pk).held, f"{s.shard_key}:{s.epoch}")) == 100
    assert stored(r, boss, s) == ["a", 40, "c", 15]
    # seq 2 carries damage of players the heartbeat did not know: held shrinks, the rest is cut.
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=2, amount=80, breakdown={"z": 80})
    assert stored(r, boss, s) == ["a", 20]
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=3, amount=20)
    assert stored(r, boss, s) == []  # held is 0: nothing left to credit
    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    assert saga.amount == 0 and saga.detail["credited"] == {"players": 0, "amount": 0}
    boss_tick(boss_id=boss.pk, force=True)
    assert players(r, boss) == {"b": 30, "c": 5, "z": 80}


def test_a_damaged_record_fails_the_fence_before_any_write(make_boss, make_session, r):
    boss = fair_boss(make_boss)
    s = make_session()
    beat(boss, s, 100, {"a": 100})
    k = keys.BossKeys(boss.pk)
    r.hset(k.heldby, f"{s.shard_key}:{s.epoch}", "not json")
    before = {name: r.dump(key) for name, key in zip(keys.BOSS_KEY_NAMES, k.all(), strict=True)}
    with pytest.raises(Exception, match=r"(?i)expected|json"):
        authority.run(
            r, authority.fence_call(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, policy="fair")
        )
    assert {name: r.dump(key) for name, key in zip(keys.BOSS_KEY_NAMES, k.all(), strict=True)} == before


# --- property: credit never exceeds what is recovered ------------------------------------

PLAYERS = ("a", "b", "c", "d")
amounts = st.integers(1, 500)
step = st.one_of(
    st.tuples(st.just("hit"), amounts, st.sampled_from((*PLAYERS, None))),
    st.tuples(st.just("send"), st.booleans(), st.just(None)),
    st.tuples(st.just("beat"), st.booleans(), st.just(None)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, max_size=25), policy=st.sampled_from(("fair", "harsh")))
def test_player_credit_plus_shard_only_is_what_was_recovered(make_boss, make_session, r, steps, policy):
    """Random hits, deltas (accepted or lost) and heartbeats (reporting or not the in-flight
    delta as accepted), then a crash: the players credited by the fence plus the shard-only
    rest equal the recovered amount, no player gets more than it held, and a re-run credits
    nothing."""
    boss = fair_boss(make_boss, policy)
    s = make_session()
    buf = LocalBuffer()
    accepted: dict[str, int] = {}
    last_accepted = 0
    for kind, arg, player in steps:
        if kind == "hit":
            buf.add(arg, player)
        elif kind == "send":
            delta = buf.take()
            if delta is not None and arg:  # arg: it lands (else it stays in flight)
                out = delta_ingest(
                    boss_id=boss.pk,
                    shard_key=s.shard_key,
                    epoch=s.epoch,
                    seq=delta.seq,
                    amount=delta.amount,
                    breakdown=delta.breakdown,
                )
                last_accepted = out.seq
                for p, d in delta.breakdown.items():
                    accepted[p] = accepted.get(p, 0) + d
                buf.acked(delta.seq)
        else:
            inflight = buf.inflight
            beat(
                boss,
                s,
                buf.waiting,
                buf.held_breakdown(),
                inflight_seq=inflight.seq if inflight else 0,
                inflight_amount=inflight.amount if inflight else 0,
            )
    held_by_player: dict[str, int] = dict(buf.players)
    for delta in [*buf.queued, *([buf.inflight] if buf.inflight else [])]:
        if delta.seq > last_accepted:
            for p, d in delta.breakdown.items():
                held_by_player[p] = held_by_player.get(p, 0) + d

    saga = session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    boss_tick(boss_id=boss.pk, force=True)
    credit = {p: players(r, boss).get(p, 0) - accepted.get(p, 0) for p in PLAYERS}
    assert all(v >= 0 for v in credit.values())
    total = sum(credit.values())
    assert total == saga.detail["credited"]["amount"]
    if policy == "fair":
        assert total <= saga.amount  # the rest (saga.amount - total) is the shard's only
        assert all(credit[p] <= held_by_player.get(p, 0) for p in PLAYERS), (credit, held_by_player)
        assert saga.amount <= buf.unacked
    else:
        assert total == 0
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    ledger_recovered = report.recovered if policy == "fair" else report.discarded
    assert ledger_recovered == saga.amount
    session_fence(boss=boss, shard_key=s.shard_key, epoch=s.epoch)
    boss_tick(boss_id=boss.pk, force=True)
    assert sum(players(r, boss).values()) == sum(accepted.values()) + total
