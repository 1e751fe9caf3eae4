"""The victory saga streams: 200,000 players in Redis, copied and granted in batches."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db.models import Count, Max, Min

from bosses.models import Contribution, RewardGrant, RewardTable, RewardTier, SagaStatus
from bosses.sagas.victory import LEADERBOARD_SIZE, VICTORY_STEPS, boss_victory_run, steps_done
from bosses.services import boss_go_live, boss_tick
from core import keys, rewards
from core.clients import slot_client
from core.redis import get_redis
from tests.support.authority import delta_ingest

PLAYERS = 200_000
SEED_BATCH = 10_000
DETAIL_MAX_BYTES = 10_000


def seeded_damage(i: int) -> int:
    # many ties (values repeat every 50,000 players), spread over 1..50,000
    return (i * 7_919) % 50_000 + 1


def seed_players(boss_id: int) -> dict[str, int]:
    """Write PLAYERS totals straight into the authority's players hash (pipelined)."""
    k = keys.BossKeys(boss_id)
    client = slot_client(get_redis(), k.players)
    damage = {f"pl{i:06d}": seeded_damage(i) for i in range(PLAYERS)}
    items = list(damage.items())
    for start in range(0, PLAYERS, SEED_BATCH):
        pipe = client.pipeline(transaction=False)
        pipe.hset(k.players, mapping=dict(items[start : start + SEED_BATCH]))
        pipe.execute()
    return damage


# A scale run (200k players, about 8-12 s here): the whole suite runs it (make test-all), the
# developer suite does not; the victory saga itself is covered there by test_victory.py.
@pytest.mark.slow
def test_two_hundred_thousand_players_stream_through_the_saga(make_boss, make_session):
    table = RewardTable.objects.create(name="Big raid", min_damage=100, last_hit_payload={"title": "Slayer"})
    RewardTier.objects.create(table=table, position=0, name="champion", kind="rank", rank_from=1, rank_to=1)
    RewardTier.objects.create(table=table, position=1, name="top1", kind="percentile", percent=Decimal("1"))
    RewardTier.objects.create(table=table, position=2, name="big", kind="damage", damage_min=40_000)
    RewardTier.objects.create(table=table, position=3, name="rest", kind="rank", rank_from=2, rank_to=None)
    boss = make_boss(max_hp=100, reward_table=table)
    boss_go_live(boss=boss)
    s = make_session()
    # A real kill: the defeating tick credits pl000001 with the killing blow (the largest
    # damage of that tick); then the players hash is filled as 200,000 players would have.
    delta_ingest(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        seq=1,
        amount=100,
        breakdown={"pl000001": 70, "pl000002": 30},
    )
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    damage = seed_players(boss.pk)  # overwrites the two players' totals with seeded ones

    saga = boss_victory_run(boss_id=boss.pk, fight=boss.fight)

    assert saga.status == SagaStatus.COMPLETED and steps_done(saga) == list(VICTORY_STEPS)
    players = Contribution.objects.filter(boss=boss, kind="player")
    agg = players.aggregate(n=Count("id"), ranks=Count("rank", distinct=True), lo=Min("rank"), hi=Max("rank"))
    assert agg == {"n": PLAYERS, "ranks": PLAYERS, "lo": 1, "hi": PLAYERS}
    assert Contribution.objects.filter(boss=boss, kind="shard").count() == 1

    spec = rewards.Table(
        tiers=(
            rewards.Tier("champion", "rank", rank_from=1, rank_to=1),
            rewards.Tier("top1", "percentile", percent=Fraction(1)),
            rewards.Tier("big", "damage", damage_min=40_000),
            rewards.Tier("rest", "rank", rank_from=2, rank_to=None),
        ),
        min_damage=100,
    )
    expected = rewards.tiers_assign(spec, damage)
    top = [(a.rank, a.player, a.damage) for a in expected[:LEADERBOARD_SIZE]]
    assert (
        list(
            players.filter(rank__lte=LEADERBOARD_SIZE).order_by("rank").values_list("rank", "name", "damage")
        )
        == top
    )
    # Ranks in SQL equal the Python order (damage desc, ties by name) further down too.
    sample = [expected[i] for i in (10, 999, 1_000, 54_321, PLAYERS - 1)]
    for a in sample:
        assert players.get(name=a.player).rank == a.rank
    assert saga.detail["leaderboard"] == [{"rank": r, "player": p, "damage": d} for r, p, d in top]

    want: dict[str, int] = {}
    for a in expected:
        if a.tier is not None:
            want[a.tier.name] = want.get(a.tier.name, 0) + 1
    want["last_hit"] = 1  # pl000001: seeded damage 7,920 >= 100
    got = dict(RewardGrant.objects.filter(boss=boss).values_list("tier").annotate(n=Count("id")))
    assert got == want
    eligible = PLAYERS - 4 * 99  # damage 1..99 (each value 4 times) is below min_damage
    assert saga.steps[-2]["eligible"] == eligible
    assert (
        want["top1"] == -(-eligible // 100) - 1
        and sum(want.values()) == RewardGrant.objects.filter(boss=boss).count()
    )
    assert RewardGrant.objects.get(boss=boss, tier="last_hit").player == "pl000001"

    # The saga's own record stays small whatever the number of players.
    assert len(json.dumps(saga.detail)) < DETAIL_MAX_BYTES
    assert len(json.dumps(saga.steps)) < DETAIL_MAX_BYTES
    assert saga.detail["players_count"] == PLAYERS
