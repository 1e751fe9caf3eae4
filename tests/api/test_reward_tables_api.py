"""Reward tables through the API: create, read, list, replace whole (tiers in order), delete;
a table the admin would refuse is refused whole (nothing written); operate scope for writes,
every write audited; a won fight grants by the table written through the API."""

from __future__ import annotations

import pytest

from tests.support.authority import delta_ingest

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

TABLE = {
    "name": "Raid",
    "min_damage": 10,
    "last_hit_payload": {"title": "Slayer"},
    "tiers": [
        {"name": "mvp", "kind": "rank", "rank_from": 1, "rank_to": 1, "payload": {"gold": 100}},
        {"name": "rest", "kind": "rank", "rank_from": 2, "payload": {"xp": 5}},
    ],
}


def test_a_backend_designs_reward_tables(api, make_key, make_boss, make_session):
    from audit.models import AuditEntry
    from bosses.models import RewardTable
    from bosses.sagas.victory import boss_victory_run
    from bosses.services import boss_go_live, boss_tick

    operate, read = make_key("operate", "read"), make_key("read")
    assert api.post("/reward-tables", key=read, body=TABLE).status == 403
    created = api.post("/reward-tables", key=operate, body=TABLE)
    assert created.status == 201, created
    assert [(t["position"], t["name"]) for t in created.body["tiers"]] == [(0, "mvp"), (1, "rest")]
    assert api.get("/reward-tables/Raid", key=read).body == created.body
    assert [t["name"] for t in api.get("/reward-tables", key=read).body["items"]] == ["Raid"]
    assert api.post("/reward-tables", key=operate, body=TABLE).code == "invalid"  # the name is taken

    # overlapping rank ranges: refused whole, the table as it was
    overlap = {
        **TABLE,
        "tiers": [*TABLE["tiers"], {"name": "dup", "kind": "rank", "rank_from": 1, "rank_to": 3}],
    }
    refused = api.call("PUT", "/reward-tables/Raid", key=operate, body=overlap)
    assert refused.code == "reward_table_invalid", refused
    assert [t.name for t in RewardTable.objects.get(name="Raid").tiers.all()] == ["mvp", "rest"]

    replaced = api.call(
        "PUT",
        "/reward-tables/Raid",
        key=operate,
        body={**TABLE, "tiers": [{"name": "all", "kind": "damage", "damage_min": 10, "payload": {"xp": 1}}]},
    )
    assert replaced.status == 200 and [t["name"] for t in replaced.body["tiers"]] == ["all"]

    # a fight won on that table grants by it
    boss = make_boss(slug="raid-boss", max_hp=100, reward_table=RewardTable.objects.get(name="Raid"))
    boss_go_live(boss=boss)
    s = make_session("gs-r")
    delta_ingest(boss_id=boss.pk, shard_key="gs-r", epoch=s.epoch, seq=1, amount=150, breakdown={"ann": 150})
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    boss_victory_run(boss_id=boss.pk, fight=1)
    tiers = [g["tier"] for g in api.get("/bosses/raid-boss/fights/1/players/ann", key=read).body["rewards"]]
    assert tiers == ["all", "last_hit"]

    assert api.call("DELETE", "/reward-tables/Raid", key=operate).code == "invalid"  # a boss uses it
    boss.reward_table = None
    boss.save(update_fields=["reward_table"])
    assert api.call("DELETE", "/reward-tables/Raid", key=operate).status == 204
    assert api.get("/reward-tables/Raid", key=read).code == "not_found"

    rows = AuditEntry.objects.filter(action__startswith="reward_table.").order_by("id")
    assert [(r.action, r.outcome) for r in rows] == [
        ("reward_table.create", "forbidden"),
        ("reward_table.create", "ok"),
        ("reward_table.create", "invalid"),
        ("reward_table.replace", "reward_table_invalid"),
        ("reward_table.replace", "ok"),
        ("reward_table.delete", "invalid"),
        ("reward_table.delete", "ok"),
    ]
