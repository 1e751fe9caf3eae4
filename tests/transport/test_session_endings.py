"""Every way a game server's session can end leaves the same trace: one completed crash saga per
boss it had state on, its reason recorded, its settlement in Redis, and ``verify_boss`` OK.

Through the real gateway (Channels' communicator) against real Redis; the crash scan is
driven by a :class:`~core.clock.ManualClock` set from the session's last sign of life
(docs/sagas.md, "How a session ends").
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from bosses.models import SagaKind, SagaRun, SagaStatus
from bosses.sagas.crash import crashed_sessions_scan, shard_retire
from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.clock import ManualClock
from core.redis import get_redis
from shards.models import Shard, ShardStatus
from tests.transport.test_gateway_consumer import expect_close, new_shard, recv, send, server, ws
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

TIMEOUT_MS = 300


@pytest.fixture
def boss(make_boss):
    def make(policy: str = "fair"):
        b = make_boss(crash_policy=policy, heartbeat_interval_ms=100, heartbeat_timeout_ms=TIMEOUT_MS)
        boss_go_live(boss=b)
        return b

    return make


def declare_silent_sessions_crashed(boss) -> list[SagaRun]:
    """Run the crash scan as if every session of ``boss`` had been silent one timeout + 1 ms."""
    beats = get_redis().hgetall(keys.BossKeys(boss.pk).hb)
    clock = ManualClock(max(int(v) for v in beats.values()))
    assert crashed_sessions_scan(clock=clock) == []  # the scanner starts watching here
    clock.advance(TIMEOUT_MS + 1)
    return crashed_sessions_scan(clock=clock)


def the_books_agree(boss) -> None:
    """Drain what a fair settlement queued, then check every invariant and every saga record."""
    boss_tick(boss_id=boss.pk, force=True)
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    settled = get_redis().hgetall(keys.BossKeys(boss.pk).settled)
    sagas = SagaRun.objects.filter(boss=boss, kind=SagaKind.CRASH)
    assert sorted(settled) == sorted(keys.session_id(s.shard_key, s.epoch) for s in sagas)
    assert all(s.status == SagaStatus.COMPLETED for s in sagas)


def saga_of(boss, key: str, epoch: int) -> SagaRun:
    return SagaRun.objects.get(boss=boss, kind=SagaKind.CRASH, shard_key=key, epoch=epoch)


async def test_a_crash_after_heartbeats_settles_the_last_report(boss):
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-1")
    comm, epoch = await server("end-1", token)
    for seq in (1, 2, 3):
        await send(comm, type="damage", boss=b.slug, seq=seq, amount=100)
    await send(comm, type="heartbeat", boss=b.slug, pending=50, inflight={"seq": 4, "amount": 20})
    # The process hangs: the socket stays open, nothing more arrives.
    [saga] = await sync_to_async(declare_silent_sessions_crashed)(b)
    assert (saga.epoch, saga.detail["reason"], saga.policy, saga.amount) == (epoch, "crashed", "fair", 70)
    assert (await sync_to_async(Shard.objects.get)(key="end-1")).status == ShardStatus.CRASHED
    await sync_to_async(the_books_agree)(b)
    assert (await send(comm, type="damage", boss=b.slug, seq=4, amount=20))["code"] == "fenced"
    await comm.disconnect()


async def test_a_crash_without_any_heartbeat_is_recorded_too(boss):
    """The case reported against verify_boss: deltas and re-sent seqs, no heartbeat at all, a
    hostile socket on the same shard URL, then a close without ``bye``."""
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-2")
    comm, epoch = await server("end-2", token)
    acks = [
        await send(comm, type="damage", boss=b.slug, seq=seq, amount=1_000)
        for seq in [*range(1, 21), 5, 10, 10]
    ]
    assert [(a["type"], a["seq"], a["duplicate"]) for a in acks[20:]] == [
        ("ack", 5, True),
        ("ack", 10, True),
    ] * 1 + [("ack", 10, True)]
    assert not any(a["duplicate"] for a in acks[:20])
    for frame in ({"type": "bye"}, {"type": "damage", "boss": b.slug, "seq": 21, "amount": 5}):
        hostile = await ws("/ws/shards/end-2/")  # no token: refused and closed, nothing changes
        await hostile.send_to(text_data=json.dumps(frame))
        await expect_close(hostile, CloseCode.UNAUTHORIZED, "unauthorized")
    await comm.disconnect()
    [saga] = await sync_to_async(declare_silent_sessions_crashed)(b)
    assert (saga.epoch, saga.detail["reason"], saga.amount, saga.detail["last_seq"]) == (
        epoch,
        "crashed",
        0,
        20,
    )
    await sync_to_async(the_books_agree)(b)
    assert (await sync_to_async(boss_verify)(boss=b)).applied == 20_000


@pytest.mark.parametrize("policy", ["fair", "harsh"])
async def test_bye_ends_the_session_on_every_boss_it_touched(boss, policy):
    first, second = await sync_to_async(boss)(policy), await sync_to_async(boss)(policy)
    _, token = await sync_to_async(new_shard)("end-3")
    comm, epoch = await server("end-3", token)
    await send(comm, type="damage", boss=first.slug, seq=1, amount=10)
    await send(comm, type="heartbeat", boss=second.slug, pending=4)  # held, never flushed
    await comm.send_to(text_data=json.dumps({"type": "bye"}))
    ack = await recv(comm)
    assert ack == {"type": "bye_ack", "epoch": epoch, "settled": {first.slug: 0, second.slug: 4}}
    for b, amount in ((first, 0), (second, 4)):
        saga = await sync_to_async(saga_of)(b, "end-3", epoch)
        assert (saga.detail["reason"], saga.policy, saga.amount) == ("left", policy, amount)
        assert await sync_to_async(declare_silent_sessions_crashed)(b) == []  # nothing left to detect
        await sync_to_async(the_books_agree)(b)
    assert (await sync_to_async(Shard.objects.get)(key="end-3")).status == ShardStatus.ONLINE


async def test_bye_on_a_resumed_socket_ends_what_the_earlier_socket_sent(boss):
    """The session's damage went over the first socket; the second (resumed) one only says bye."""
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-4")
    comm, epoch = await server("end-4", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=10)
    await comm.disconnect()
    again = await ws(f"/ws/shards/end-4/?resume={epoch}", token)
    assert (await recv(again))["resumed"] is True
    await again.send_to(text_data=json.dumps({"type": "bye"}))
    assert (await recv(again))["settled"] == {b.slug: 0}
    assert (await sync_to_async(saga_of)(b, "end-4", epoch)).detail["reason"] == "left"
    await sync_to_async(the_books_agree)(b)


async def test_a_close_without_bye_is_declared_crashed_after_the_timeout(boss):
    b = await sync_to_async(boss)("harsh")
    _, token = await sync_to_async(new_shard)("end-5")
    comm, epoch = await server("end-5", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=10)
    await send(comm, type="heartbeat", boss=b.slug, pending=6)
    await comm.disconnect()  # it may come back and resume: nothing is fenced yet
    assert await sync_to_async(get_redis().hgetall)(keys.BossKeys(b.pk).settled) == {}
    [saga] = await sync_to_async(declare_silent_sessions_crashed)(b)
    assert (saga.epoch, saga.detail["reason"], saga.policy, saga.amount) == (epoch, "crashed", "harsh", 6)
    await sync_to_async(the_books_agree)(b)
    assert (await sync_to_async(boss_verify)(boss=b)).discarded == 6


async def test_a_new_auth_on_the_same_socket_replaces_the_session(boss):
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-6")
    comm, epoch = await server("end-6", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=10)
    await send(comm, type="heartbeat", boss=b.slug, pending=7)
    welcome = await send(comm, type="auth", token=token)
    assert welcome["type"] == "welcome" and welcome["epoch"] == epoch + 1
    saga = await sync_to_async(saga_of)(b, "end-6", epoch)
    assert (saga.detail["reason"], saga.amount) == ("replaced", 7)
    assert (await send(comm, type="damage", boss=b.slug, seq=1, amount=3))["duplicate"] is False
    settled = await sync_to_async(get_redis().hgetall)(keys.BossKeys(b.pk).settled)
    assert list(settled) == [keys.session_id("end-6", epoch)]  # the new session is untouched
    assert (await sync_to_async(Shard.objects.get)(key="end-6")).status == ShardStatus.ONLINE
    await sync_to_async(the_books_agree)(b)
    assert (await sync_to_async(boss_verify)(boss=b)).applied == 20


async def test_resuming_the_same_epoch_on_the_same_socket_ends_nothing(boss):
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-7")
    comm, epoch = await server("end-7", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=10)
    welcome = await send(comm, type="auth", token=token, resume=epoch)
    assert (welcome["epoch"], welcome["resumed"]) == (epoch, True)
    assert await sync_to_async(SagaRun.objects.count)() == 0
    assert (await send(comm, type="damage", boss=b.slug, seq=2, amount=10))["duplicate"] is False
    await sync_to_async(the_books_agree)(b)


async def test_retiring_the_shard_ends_its_session_with_reason_retired(boss):
    b = await sync_to_async(boss)("harsh")
    shard, token = await sync_to_async(new_shard)("end-8")
    comm, epoch = await server("end-8", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=10)
    await send(comm, type="heartbeat", boss=b.slug, pending=9)
    assert await sync_to_async(shard_retire)(shard=shard) == 1
    saga = await sync_to_async(saga_of)(b, "end-8", epoch)
    assert (saga.detail["reason"], saga.policy, saga.amount) == ("retired", "harsh", 9)
    assert (await send(comm, type="damage", boss=b.slug, seq=2, amount=5))["code"] == "fenced"
    await sync_to_async(the_books_agree)(b)
    assert (await sync_to_async(Shard.objects.get)(key="end-8")).status == ShardStatus.RETIRED


# --- damage after the end ------------------------------------------------------------------


async def test_a_delta_refused_after_the_defeat_never_becomes_credit(make_boss):
    """HP 1,000 killed by 1,000; the last heartbeat reported 500 more in flight, refused
    ``not_live``; then ``bye``: nothing is recovered, accepted stays 1,000."""
    b = await sync_to_async(make_boss)(
        max_hp=1_000, crash_policy="fair", heartbeat_interval_ms=100, heartbeat_timeout_ms=TIMEOUT_MS
    )
    await sync_to_async(boss_go_live)(boss=b)
    _, token = await sync_to_async(new_shard)("end-9")
    comm, _ = await server("end-9", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=1_000)
    await send(comm, type="heartbeat", boss=b.slug, pending=0, inflight={"seq": 2, "amount": 500})
    assert (await sync_to_async(boss_tick)(boss_id=b.pk, force=True)).defeated
    refused = await send(comm, type="damage", boss=b.slug, seq=2, amount=500)
    assert (refused["code"], refused["status"]) == ("not_live", "defeated")
    await comm.send_to(text_data=json.dumps({"type": "bye"}))
    assert (await recv(comm))["settled"] == {b.slug: 0}
    await sync_to_async(the_books_agree)(b)
    report = await sync_to_async(boss_verify)(boss=b)
    assert (report.accepted, report.applied, report.recovered, report.buffered) == (1_000, 1_000, 0, 0)


async def test_what_a_session_held_at_the_defeat_is_discarded_not_credited(make_boss):
    """A fair boss's settlement after the end is harsh: the held 500 is discarded, never
    accepted, recovered or credited to its player."""
    b = await sync_to_async(make_boss)(
        max_hp=1_000, crash_policy="fair", heartbeat_interval_ms=100, heartbeat_timeout_ms=TIMEOUT_MS
    )
    await sync_to_async(boss_go_live)(boss=b)
    _, token = await sync_to_async(new_shard)("end-10")
    _, other = await sync_to_async(new_shard)("end-11")
    holder, epoch = await server("end-10", token)
    killer, _ = await server("end-11", other)
    await send(holder, type="heartbeat", boss=b.slug, pending=500, breakdown={"alice": 500})
    await send(killer, type="damage", boss=b.slug, seq=1, amount=1_000, breakdown={"bob": 1_000})
    assert (await sync_to_async(boss_tick)(boss_id=b.pk, force=True)).defeated
    await holder.send_to(text_data=json.dumps({"type": "bye"}))
    assert (await recv(holder))["settled"] == {b.slug: 500}
    saga = await sync_to_async(saga_of)(b, "end-10", epoch)
    assert (saga.policy, saga.amount, saga.detail["credited"]) == ("harsh", 500, {"players": 0, "amount": 0})
    await sync_to_async(the_books_agree)(b)
    report = await sync_to_async(boss_verify)(boss=b)
    assert (report.accepted, report.recovered, report.discarded, report.buffered) == (1_000, 0, 500, 0)
    players = await sync_to_async(get_redis().hgetall)(keys.BossKeys(b.pk).players)
    assert players == {"bob": "1000"}
    await killer.disconnect()


async def test_verify_fails_on_a_buffer_left_on_a_defeated_boss(make_boss):
    """Damage buffered on a boss that is over never drains (the tick skips it): the ledger
    equation still holds, but verify_boss must not call it fine."""
    b = await sync_to_async(make_boss)(max_hp=1_000)
    await sync_to_async(boss_go_live)(boss=b)
    _, token = await sync_to_async(new_shard)("end-12")
    comm, epoch = await server("end-12", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=1_000)
    await sync_to_async(boss_tick)(boss_id=b.pk, force=True)
    assert (await sync_to_async(boss_verify)(boss=b)).ok
    k = keys.BossKeys(b.pk)
    r = get_redis()
    await sync_to_async(r.hincrby)(k.buf, keys.session_id("end-12", epoch), 500)  # a stuck buffer
    await sync_to_async(r.hincrby)(k.state, "accepted", 500)
    report = await sync_to_async(boss_verify)(boss=b)
    assert report.problems == ["buffered 500 on a defeated boss can never drain"]
    await comm.disconnect()


async def test_the_in_flight_part_counts_only_while_unaccepted_and_the_fence_says_who_it_credited(boss):
    """bob's delta lands before the heartbeat that still reports it: only the pending part
    (ann 100, 50 unattributed) is held and credited, and the ``fenced`` refusal names it."""
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-13")
    comm, epoch = await server("end-13", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=50, breakdown={"bob": 50})
    beat = await send(
        comm,
        type="heartbeat",
        boss=b.slug,
        pending=150,
        breakdown={"ann": 100},
        inflight={"seq": 1, "amount": 50, "breakdown": {"bob": 50}},
    )
    assert beat["held"] == 150
    heldby = await sync_to_async(get_redis().hget)(
        keys.BossKeys(b.pk).heldby, keys.session_id("end-13", epoch)
    )
    assert json.loads(heldby) == ["ann", 100]
    [saga] = await sync_to_async(declare_silent_sessions_crashed)(b)
    assert (saga.amount, saga.detail["credited"]) == (150, {"players": 1, "amount": 100})
    refused = await send(comm, type="damage", boss=b.slug, seq=2, amount=150, breakdown={"ann": 100})
    assert (refused["code"], refused["settled"], refused["credited"]) == ("fenced", 150, {"ann": 100})
    await sync_to_async(the_books_agree)(b)
    players = await sync_to_async(get_redis().hgetall)(keys.BossKeys(b.pk).players)
    assert players == {"ann": "100", "bob": "50"}
    await comm.disconnect()


async def test_an_in_flight_breakdown_over_its_amount_is_refused(boss):
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-14")
    comm, _ = await server("end-14", token)
    refused = await send(
        comm,
        type="heartbeat",
        boss=b.slug,
        pending=0,
        inflight={"seq": 1, "amount": 5, "breakdown": {"a": 6}},
    )
    assert (refused["code"], refused["field"]) == ("invalid_amount", "inflight.breakdown")
    await comm.disconnect()


async def test_a_heartbeat_that_arrives_after_a_later_delta_is_stale(boss):
    """A heartbeat made before seq 1 went out (``sent`` 0, its 50 still pending) arrives after
    seq 1 carried those 50, as one delayed on a socket the client had left: it only counts as a
    sign of life, so the 50 are not held a second time and ``bye`` settles nothing."""
    b = await sync_to_async(boss)("fair")
    _, token = await sync_to_async(new_shard)("end-15")
    comm, _ = await server("end-15", token)
    await send(comm, type="damage", boss=b.slug, seq=1, amount=50, breakdown={"ann": 50})
    beat = await send(comm, type="heartbeat", boss=b.slug, pending=50, sent=0, breakdown={"ann": 50})
    assert (beat["last_seq"], beat["held"]) == (1, 0)
    current = await send(comm, type="heartbeat", boss=b.slug, pending=20, sent=1)  # not stale
    assert current["held"] == 20
    await comm.send_to(text_data=json.dumps({"type": "bye"}))
    assert (await recv(comm))["settled"] == {b.slug: 20}
    await sync_to_async(the_books_agree)(b)
    report = await sync_to_async(boss_verify)(boss=b)
    assert (report.accepted, report.recovered) == (70, 20)
    await comm.disconnect()
