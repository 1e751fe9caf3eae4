"""``GET .../players/<id>`` returns every grant of a player in a won fight: a player who ranked
first and dealt the killing blow has a rank tier's grant and the ``last_hit`` grant, as the
reward feed lists them."""

from __future__ import annotations

import pytest

from tests.support.authority import delta_ingest

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def test_a_player_with_two_grants_gets_both(api, key, make_boss, make_session):
    from bosses.models import RewardTable, RewardTier
    from bosses.sagas.victory import boss_victory_run
    from bosses.services import boss_go_live, boss_tick

    table = RewardTable.objects.create(name="Slayers", min_damage=1, last_hit_payload={"title": "Slayer"})
    RewardTier.objects.create(
        table=table, position=0, name="mvp", kind="rank", rank_from=1, rank_to=1, payload={"gold": 10}
    )
    RewardTier.objects.create(
        table=table, position=1, name="participant", kind="rank", rank_from=2, rank_to=None, payload={"xp": 1}
    )
    boss = make_boss(slug="grants", max_hp=1_000, reward_table=table)
    boss_go_live(boss=boss)
    s = make_session("gs-1")
    delta_ingest(boss_id=boss.pk, shard_key="gs-1", epoch=s.epoch, seq=1, amount=400, breakdown={"bob": 400})
    boss_tick(boss_id=boss.pk, force=True)
    delta_ingest(boss_id=boss.pk, shard_key="gs-1", epoch=s.epoch, seq=2, amount=700, breakdown={"ann": 700})
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    boss_victory_run(boss_id=boss.pk, fight=1)

    ann = api.get("/bosses/grants/fights/1/players/ann", key=key).body
    assert ann.get("rank") == 1 and ann["source"] == "final", ann
    assert [g["tier"] for g in ann["rewards"]] == ["mvp", "last_hit"]
    assert ann["reward"] == ann["rewards"][0]
    feed = api.get("/rewards?boss=grants&player=ann", key=key).body
    assert [g["id"] for g in feed["items"]] == [g["id"] for g in ann["rewards"]]
    bob = api.get("/bosses/grants/fights/1/players/bob", key=key).body
    assert [g["tier"] for g in bob["rewards"]] == ["participant"]
