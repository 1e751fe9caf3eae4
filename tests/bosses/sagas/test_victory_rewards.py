"""The victory saga grants from the boss's designed reward table (real Redis, real ticks)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from bosses import signals
from bosses.models import RewardGrant, RewardTable, RewardTier, SagaStatus
from bosses.sagas.victory import boss_victory_run
from bosses.services import boss_go_live, boss_tick
from tests.support.authority import delta_ingest

# Tick 1 leaves 140 hp; tick 2 (h 100, g 60) kills: h has the largest damage of the defeating
# tick, so h is credited with the last hit. Totals: a 300, b 200, c 150, h 105, d 100, g 80,
# e 50, f 30, i 5.
TICK_1 = {"a": 300, "b": 200, "c": 150, "d": 100, "e": 50, "f": 30, "g": 20, "h": 5, "i": 5}
TICK_2 = {"h": 100, "g": 60}


def designed_table(*, last_hit: dict | None = None, min_damage: int = 10) -> RewardTable:
    table = RewardTable.objects.create(name="Raid", min_damage=min_damage, last_hit_payload=last_hit)
    tiers = [
        ("mvp", "rank", {"rank_from": 1, "rank_to": 1}, {"gold": 1000}),
        ("top25", "percentile", {"percent": Decimal("25")}, {"gems": 5}),
        ("heavy", "damage", {"damage_min": 100}, {"xp": 50}),
        ("thanks", "rank", {"rank_from": 7, "rank_to": None}, {"xp": 5}),
    ]
    for position, (name, kind, bounds, payload) in enumerate(tiers):
        RewardTier.objects.create(
            table=table, position=position, name=name, kind=kind, payload=payload, **bounds
        )
    return table


def kill(boss, session, ticks):
    for seq, breakdown in enumerate(ticks, start=1):
        delta_ingest(
            boss_id=boss.pk,
            shard_key=session.shard_key,
            epoch=session.epoch,
            seq=seq,
            amount=sum(breakdown.values()),
            breakdown=breakdown,
        )
        out = boss_tick(boss_id=boss.pk, force=True)
    assert out.defeated
    return out


@pytest.fixture
def events():
    got = []

    def receiver(sender, **kw):
        got.append((kw["event"], kw["fight"]))

    signals.fight_event.connect(receiver, weak=False)
    yield got
    signals.fight_event.disconnect(receiver)


def grants_of(boss):
    return {(g.player, g.tier): (g.rank, g.damage, g.payload) for g in RewardGrant.objects.filter(boss=boss)}


def test_designed_table_grants_rank_percentile_threshold_and_last_hit(make_boss, make_session, events):
    boss = make_boss(max_hp=1_000)
    boss.reward_table = designed_table(last_hit={"title": "Slayer"})
    boss.save()
    boss_go_live(boss=boss)
    kill(boss, make_session(), [TICK_1, TICK_2])

    saga = boss_victory_run(boss_id=boss.pk, fight=boss.fight)

    assert saga.status == SagaStatus.COMPLETED
    # 8 eligible (i's 5 < 10): top 25 % is ranks 1..2; g (rank 6, 80 damage) matches no tier.
    assert grants_of(boss) == {
        ("a", "mvp"): (1, 300, {"gold": 1000}),
        ("b", "top25"): (2, 200, {"gems": 5}),
        ("c", "heavy"): (3, 150, {"xp": 50}),
        ("h", "heavy"): (4, 105, {"xp": 50}),
        ("d", "heavy"): (5, 100, {"xp": 50}),
        ("e", "thanks"): (7, 50, {"xp": 5}),
        ("f", "thanks"): (8, 30, {"xp": 5}),
        ("h", "last_hit"): (4, 105, {"title": "Slayer"}),
    }
    record = saga.steps[-2]
    assert record["step"] == "rewards" and record["eligible"] == 8 and record["last_hit"] == "h"
    assert record["tiers"] == "mvp:1 top25:1 heavy:3 thanks:2 last_hit:1"
    assert saga.detail["last_hit"] == {"player": "h", "damage": 100}
    # The fight events: once each per fight, a re-run adds none.
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    assert sorted(e for e, _ in events if e in (signals.DEFEATED, signals.REWARDS_GRANTED)) == [
        signals.DEFEATED,
        signals.REWARDS_GRANTED,
    ]
    assert len(grants_of(boss)) == 8


def test_no_last_hit_reward_for_an_ineligible_killer_or_a_table_without_one(make_boss, make_session):
    boss = make_boss(max_hp=1_000)
    boss.reward_table = designed_table(last_hit={"title": "Slayer"}, min_damage=106)  # h has 105
    boss.save()
    boss_go_live(boss=boss)
    kill(boss, make_session(), [TICK_1, TICK_2])
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    grants = grants_of(boss)
    assert not any(tier == "last_hit" for _, tier in grants)
    # 3 eligible (a, b, c): top 25 % is ceil(0.75) = rank 1 only (already mvp).
    assert sorted(grants) == [("a", "mvp"), ("b", "heavy"), ("c", "heavy")]

    other = make_boss(max_hp=1_000)  # no table: the default tiers
    boss_go_live(boss=other)
    kill(other, make_session(), [TICK_1, TICK_2])
    boss_victory_run(boss_id=other.pk, fight=other.fight)
    tiers = dict(grants_of(other).keys())
    assert tiers == {
        "a": "champion",
        **dict.fromkeys(("b", "c", "h", "d", "g", "e", "f", "i"), "elite"),
    }


def test_the_table_cannot_be_deleted_while_a_boss_uses_it(make_boss):
    from django.db.models import ProtectedError

    table = designed_table()
    make_boss(reward_table=table)
    with pytest.raises(ProtectedError):
        table.delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ids commit out of order on PostgreSQL only")
@pytest.mark.django_db(transaction=True)  # the other threads' connections see what the test wrote
def test_grants_commit_in_id_order_for_the_feed_cursor(make_boss, make_session):
    """While another transaction holds the grant feed's turn, the rewards step waits before
    taking any id; it grants once the turn is free (so the API's cursor never skips a grant)."""
    import threading

    from django.db import transaction

    from bosses.sagas.victory import GRANT_FEED_LOCK_ID, grant_feed_lock

    boss = make_boss(max_hp=1_000)
    boss_go_live(boss=boss)
    kill(boss, make_session(), [TICK_1, TICK_2])
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_fight_granting():
        with transaction.atomic():
            grant_feed_lock()
            holding.set()
            release.wait(30)
        connection.close()

    holder = threading.Thread(target=other_fight_granting)
    holder.start()
    assert holding.wait(10)
    result = {}

    def victory():
        try:
            result["saga"] = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc
        finally:
            connection.close()
            done.set()

    runner = threading.Thread(target=victory)
    runner.start()
    # the saga reaches the rewards step and waits there: no grant, the lock is taken
    assert not done.wait(3), result
    assert RewardGrant.objects.filter(boss=boss).count() == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", [GRANT_FEED_LOCK_ID]
        )
        assert cursor.fetchone()[0] >= 1
    release.set()
    holder.join(10)
    assert done.wait(30)
    runner.join(10)
    assert "error" not in result, result
    assert result["saga"].status == SagaStatus.COMPLETED
    assert RewardGrant.objects.filter(boss=boss).count() > 0
