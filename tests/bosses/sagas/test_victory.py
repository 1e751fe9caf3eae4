"""The victory saga: freeze, final state, contributions, leaderboard, one reward per player, announce."""

from __future__ import annotations

import json
import time

import pytest

from bosses.models import BossStatus, Contribution, RewardGrant, SagaRun, SagaStatus
from bosses.sagas.victory import LEADERBOARD_SIZE, VICTORY_STEPS, boss_victory_run, reward_tier, steps_done
from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.errors import BossNotLive, InvalidTransition
from core.redis import get_redis
from shards.services import adelta_ingest
from tests.support.authority import delta_ingest
from tests.support.waiting import wait_until_async


def fight_to_death(boss, sessions, plan):
    """Send ``plan`` = [(session index, {player: dmg})] as deltas (one per entry), tick to death."""
    seqs = {}
    for i, players in plan:
        s = sessions[i]
        seqs[i] = seqs.get(i, 0) + 1
        delta_ingest(
            boss_id=boss.pk,
            shard_key=s.shard_key,
            epoch=s.epoch,
            seq=seqs[i],
            amount=sum(players.values()),
            breakdown=players,
        )
    return boss_tick(boss_id=boss.pk, force=True)


def expected_totals(sessions, plan):
    shards, players = {}, {}
    for i, breakdown in plan:
        key = sessions[i].shard_key
        shards[key] = shards.get(key, 0) + sum(breakdown.values())
        for p, d in breakdown.items():
            players[p] = players.get(p, 0) + d
    return shards, players


def collect(pubsub, timeout_s=2.0):
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.1)
        if m and m["type"] == "message":
            out.append(json.loads(m["data"]))
    return out


@pytest.fixture
def won_fight(make_boss, make_session):
    """A boss killed by 3 shards and 14 players (ties included), its saga not run yet."""
    boss = make_boss(max_hp=4_000)
    boss_go_live(boss=boss)
    sessions = [make_session() for _ in range(3)]
    plan = [
        (i % 3, {f"p{j:02d}": 10 * ((i + j) % 7 + 1) for j in range(14) if (i + j) % 3 != 0})
        for i in range(12)
    ]
    out = fight_to_death(boss, sessions, plan)
    assert out.defeated
    return boss, sessions, plan, out


def test_victory_saga_records_every_step_once_and_rewards_each_player(won_fight):
    boss, sessions, plan, out = won_fight
    pubsub = get_redis().pubsub()
    pubsub.subscribe(keys.state_channel(boss.pk))
    collect(pubsub, 0.2)  # the subscribe confirmation

    saga = boss_victory_run(boss_id=boss.pk, fight=boss.fight)

    assert saga.status == SagaStatus.COMPLETED and steps_done(saga) == list(VICTORY_STEPS)
    boss.refresh_from_db()
    assert (boss.status, boss.final_hp, boss.final_version) == (BossStatus.DEFEATED, 0, out.version)
    defeated_ms = int(get_redis().hget(keys.BossKeys(boss.pk).state, "defeated_ms"))
    assert int(boss.defeated_at.timestamp() * 1000) == defeated_ms

    shards, players = expected_totals(sessions, plan)
    got_shards = {c.name: c.damage for c in Contribution.objects.filter(boss=boss, kind="shard")}
    got_players = {c.name: c.damage for c in Contribution.objects.filter(boss=boss, kind="player")}
    assert (got_shards, got_players) == (shards, players)
    ranking = sorted(players.items(), key=lambda x: (-x[1], x[0]))
    leaderboard = [{"rank": i + 1, "player": p, "damage": d} for i, (p, d) in enumerate(ranking)][
        :LEADERBOARD_SIZE
    ]
    assert saga.detail["leaderboard"] == leaderboard

    grants = {g.player: (g.rank, g.tier, g.damage) for g in RewardGrant.objects.filter(boss=boss)}
    assert grants == {p: (i + 1, reward_tier(i + 1), d) for i, (p, d) in enumerate(ranking)}
    assert {t for _, t, _ in grants.values()} == {"champion", "elite", "participant"}

    messages = collect(pubsub)
    defeated = [m for m in messages if m["type"] == "defeated"]
    assert len(defeated) == 1
    assert defeated[0]["leaderboard"] == leaderboard and defeated[0]["version"] == out.version
    assert defeated[0]["players"] == len(players) and defeated[0]["shards"] == 3

    # A re-run (a duplicated task, the resume sweep) changes nothing and says nothing.
    again = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    assert again.pk == saga.pk and again.steps == saga.steps
    assert RewardGrant.objects.filter(boss=boss).count() == len(players)
    assert [m for m in collect(pubsub, 0.5) if m["type"] == "defeated"] == []
    assert boss_verify(boss=boss).ok


def test_damage_is_frozen_after_death(won_fight):
    boss, sessions, _, _ = won_fight
    s = sessions[0]
    last = int(get_redis().hget(keys.BossKeys(boss.pk).seq, f"{s.shard_key}:{s.epoch}"))
    with pytest.raises(BossNotLive) as err:
        delta_ingest(
            boss_id=boss.pk,
            shard_key=s.shard_key,
            epoch=s.epoch,
            seq=last + 1,
            amount=5,
            breakdown={"p01": 5},
        )
    assert err.value.code == "not_live"
    saga = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    freeze = saga.steps[0]
    assert freeze["step"] == "freeze" and freeze["status"] == "defeated"
    assert (
        saga.detail["final"]["accepted"] == saga.detail["final"]["applied"] + saga.detail["final"]["overkill"]
    )


def test_saga_refuses_a_boss_that_is_not_defeated(live_boss, make_session):
    s = make_session()
    delta_ingest(
        boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=10, breakdown={"alice": 10}
    )
    boss_tick(boss_id=live_boss.pk, force=True)
    with pytest.raises(InvalidTransition):
        boss_victory_run(boss_id=live_boss.pk, fight=live_boss.fight)
    saga = SagaRun.objects.get(boss=live_boss, kind="victory")
    assert saga.status == SagaStatus.RUNNING and saga.steps == []
    assert not RewardGrant.objects.filter(boss=live_boss).exists()
    live_boss.refresh_from_db()
    assert live_boss.status == BossStatus.LIVE


def test_a_fight_without_a_breakdown_grants_nothing_but_completes(make_boss, make_session):
    boss = make_boss(max_hp=50)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=60)
    boss_tick(boss_id=boss.pk, force=True)
    saga = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    assert saga.status == SagaStatus.COMPLETED and saga.detail["leaderboard"] == []
    assert [(c.kind, c.name, c.damage) for c in Contribution.objects.filter(boss=boss)] == [
        ("shard", s.shard_key, 60)
    ]
    assert not RewardGrant.objects.filter(boss=boss).exists()


def test_victory_result_summarises_the_fight_for_dashboards(won_fight):
    from bosses.sagas.victory import victory_result

    boss = won_fight[0]
    assert victory_result(boss=boss) is None
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    result = victory_result(boss=boss)
    assert result["status"] == "completed" and result["steps"] == list(VICTORY_STEPS)
    assert result["rewards"] == RewardGrant.objects.filter(boss=boss).count() > 0
    assert len(result["leaderboard"]) == LEADERBOARD_SIZE and result["final"]["hp"] == 0


def test_resume_sweep_enqueues_only_stalled_or_missing_victory_sagas(won_fight, settings):
    import redis as redis_lib

    from bosses.sagas.victory import victory_sagas_resume

    boss = won_fight[0]
    broker = redis_lib.Redis.from_url(settings.BROKER_URL)
    broker.delete("sagas")
    key = f"victory:{boss.pk}:{boss.fight}"
    assert victory_sagas_resume(stale_ms=60_000) == [key]  # defeated, no saga record at all
    SagaRun.objects.create(key=key, kind="victory", boss=boss, fight=boss.fight)
    assert victory_sagas_resume(stale_ms=60_000) == []  # just started: left alone
    assert victory_sagas_resume(stale_ms=0) == [key]  # no progress within stale_ms: again
    assert broker.llen("sagas") == 2
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    assert victory_sagas_resume(stale_ms=0) == []  # completed: never again


def _subscribed(boss_id: int, viewers: int) -> bool:
    """``viewers`` sockets are in the hub and Redis confirmed its subscription to the boss."""
    from transport.hub import get_hub

    channel = keys.state_channel(boss_id)
    return get_hub().subscriber_count(boss_id) == viewers and get_redis().pubsub_numsub(channel)[0][1] == 1


@pytest.mark.django_db(transaction=True)
async def test_viewers_get_the_defeated_message_with_the_leaderboard(make_boss, make_session):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from liveops.asgi import application

    boss = await sync_to_async(make_boss)(max_hp=100)
    await sync_to_async(boss_go_live)(boss=boss)
    s = await sync_to_async(make_session)()
    await adelta_ingest(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        seq=1,
        amount=150,
        breakdown={"alice": 90, "bob": 60},
    )
    await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    viewers = []
    for _ in range(2):
        comm = WebsocketCommunicator(application, f"/ws/bosses/{boss.slug}/")
        assert (await comm.connect())[0]
        viewers.append(comm)
    # subscribed before the saga announces
    await wait_until_async(lambda: _subscribed(boss.pk, 2), what="the viewers subscribed")
    await sync_to_async(boss_victory_run)(boss_id=boss.pk, fight=boss.fight)
    for comm in viewers:
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "no defeated message"
            msg = json.loads(await comm.receive_from(timeout=5))
            if msg["type"] == "defeated":
                break
        assert [e["player"] for e in msg["leaderboard"]] == ["alice", "bob"]
        assert msg["leaderboard"][0] == {"rank": 1, "player": "alice", "damage": 90}
        await comm.disconnect()
