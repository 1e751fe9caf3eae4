"""A past fight keeps the configuration it ran with: its results, timeline, report and
``verify_boss`` read the configuration frozen at go-live, over a live server, after the boss
and its template were edited for the next fight (docs/liveops.md)."""

from __future__ import annotations

import pytest

from tests.support.authority import delta_ingest

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

FIRST_HP = 25_000_000


def _hit(boss, session, seq: int, amount: int) -> None:
    delta_ingest(
        boss_id=boss.pk,
        shard_key=session.shard_key,
        epoch=session.epoch,
        seq=seq,
        amount=amount,
        breakdown={"alice": amount},
    )


def test_a_past_fight_reads_its_frozen_configuration(api, key, make_session):
    from bosses.fight_configs import fight_config_diff
    from bosses.models import BossTemplate, FightConfig
    from bosses.report import fight_report
    from bosses.services import (
        boss_create_from_template,
        boss_end,
        boss_go_live,
        boss_reset,
        boss_tick,
        boss_update,
        event_log_archive,
        template_save,
    )
    from bosses.verification import boss_verify

    template = template_save(
        template=None,
        fields={
            "name": "Weekly Golem",
            "slug": "weekly-golem",
            "max_hp": FIRST_HP,
            "phases": "75:Enraged, 50:Frenzy",
        },
    )
    boss = boss_create_from_template(template=template, name="Golem", slug="golem")
    boss_go_live(boss=boss)
    assert boss_verify(boss=boss).ok
    session = make_session("eu-1")
    # 30 % then 60 % of the fight's HP: Enraged at the second version's tick, Frenzy at the third's
    _hit(boss, session, 1, FIRST_HP * 3 // 10)
    boss_tick(boss_id=boss.pk, force=True)
    _hit(boss, session, 2, FIRST_HP * 3 // 10)
    boss_tick(boss_id=boss.pk, force=True)
    boss.refresh_from_db()
    boss_end(boss=boss)
    event_log_archive(boss=boss)
    before = api.get("/bosses/golem/fights/1/results", key=key).body
    timeline_before = api.get("/bosses/golem/fights/1/timeline", key=key).body
    assert before["max_hp"] == FIRST_HP and before["config"]["frozen"] is True
    assert before["config"]["template"] == "weekly-golem"

    # the next fight: the boss and its template are edited (the demo's 1e9 HP reset)
    boss.refresh_from_db()
    boss_reset(boss=boss)
    boss_update(boss_id=boss.pk, fields={"max_hp": 1_000_000_000, "phases": "90:Angry"})
    template_save(template=template, fields={"max_hp": 7, "phases": "10:Last"})
    boss.refresh_from_db()

    after = api.get("/bosses/golem/fights/1/results", key=key).body
    # (a past fight without a victory has no live totals any more: those are not configuration)
    assert {**after, "totals": None} == {**before, "totals": None}, (before, after)
    assert after["max_hp"] == FIRST_HP and after["config"]["phases"] == "75:Enraged, 50:Frenzy"
    timeline = api.get("/bosses/golem/fights/1/timeline", key=key).body
    assert timeline == timeline_before
    phases = [(i["phase"], i["version"]) for i in timeline["items"] if i["kind"] == "phase"]
    assert [name for name, _ in phases] == ["Enraged", "Frenzy"]
    assert all(v > 1 for _, v in phases), phases  # not every phase at the seed's version
    report = fight_report(boss=boss, fight=1)
    assert report["summary"]["max_hp"] == FIRST_HP
    assert [p["name"] for p in report["hp"]["phases"]] == ["Enraged", "Frenzy"]

    # the new fight has not gone live: its configuration is the boss's current one
    current = api.get("/bosses/golem/fights/2/results", key=key).body
    assert current["max_hp"] == 1_000_000_000 and current["config"]["frozen"] is False
    changed = {c.field: (c.before, c.after) for c in fight_config_diff(boss=boss, fight=1)}
    assert changed["max_hp"] == (FIRST_HP, 1_000_000_000)
    assert changed["phases"] == ("75:Enraged, 50:Frenzy", "90:Angry")
    boss_go_live(boss=boss)
    boss.refresh_from_db()
    assert boss_verify(boss=boss).ok
    assert FightConfig.objects.get(boss=boss, fight=2).config["max_hp"] == 1_000_000_000
    assert BossTemplate.objects.get(slug="weekly-golem").max_hp == 7


def test_templates_through_the_api(api, key):
    draft = {"name": "Nightly Hydra", "slug": "nightly-hydra", "max_hp": 50_000, "phases": "50:Frenzy"}
    created = api.post("/templates", key=key, body=draft)
    assert created.status == 201 and created.body["max_hp"] == 50_000, created
    bad = {**draft, "slug": "bad", "name": "Bad", "min_damage": 9, "max_damage": 1}
    assert api.post("/templates", key=key, body=bad).body["error"]["field"] == "min_damage"
    assert api.post("/templates", key=key, body=draft).code == "invalid"  # the slug is taken
    boss = api.post("/templates/nightly-hydra/bosses", key=key, body={"name": "Hydra", "slug": "hydra"})
    assert boss.status == 201 and boss.body["template"] == "nightly-hydra", boss
    assert (boss.body["max_hp"], boss.body["phases"], boss.body["status"]) == (50_000, "50:Frenzy", "draft")
    assert api.post("/templates/nope/bosses", key=key, body={"name": "X", "slug": "x"}).code == "not_found"
    assert api.post("/bosses/hydra/go-live", key=key).status == 200

    edited = api.call("PATCH", "/templates/nightly-hydra", key=key, body={"max_hp": 80_000})
    assert edited.status == 200 and edited.body["max_hp"] == 80_000
    config = api.get("/bosses/hydra/fights/1/config", key=key).body
    assert config["config"]["frozen"] and config["config"]["max_hp"] == 50_000
    assert config["changes"] == []  # the boss itself was not edited
    assert api.post("/bosses/hydra/end", key=key).status == 200
    assert api.call("PATCH", "/bosses/hydra", key=key, body={"name": "Hydra II"}).status == 200
    changes = api.get("/bosses/hydra/fights/1/config", key=key).body["changes"]
    assert changes == []  # the name is not configuration
    assert [t["slug"] for t in api.get("/templates", key=key).body["items"]] == ["nightly-hydra"]
