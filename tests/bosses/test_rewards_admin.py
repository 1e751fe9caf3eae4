"""Reward tables in the admin: tiers inline, clear validation, the design permission, the preview."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from bosses.models import RewardTable, RewardTier
from bosses.sagas.victory import boss_victory_run
from bosses.services import boss_go_live, boss_tick
from tests.support.authority import delta_ingest

ADD_URL = "admin:bosses_rewardtable_add"


def account(name: str, perms: tuple[str, ...]) -> Client:
    user = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="bosses", codename__in=perms)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def designer(db):
    return account("designer", ("design_rewards", "view_rewardtable"))


@pytest.fixture
def viewer(db):
    return account("viewer", ("view_rewardtable", "view_bossencounter"))


def tier_rows(*tiers: dict[str, str]) -> dict[str, str]:
    data = {
        "tiers-TOTAL_FORMS": str(len(tiers)),
        "tiers-INITIAL_FORMS": "0",
        "tiers-MIN_NUM_FORMS": "0",
        "tiers-MAX_NUM_FORMS": "1000",
    }
    blank = {"rank_from": "", "rank_to": "", "percent": "", "damage_min": "", "payload": "{}"}
    for i, tier in enumerate(tiers):
        for field, value in {**blank, "position": str(i), **tier}.items():
            data[f"tiers-{i}-{field}"] = value
    return data


def post_table(client: Client, *tiers: dict[str, str], **fields: str):
    table = {"name": "Raid", "description": "", "min_damage": "10", "last_hit_payload": "", **fields}
    return client.post(reverse(ADD_URL), {**table, **tier_rows(*tiers)})


GOOD = (
    {"name": "mvp", "kind": "rank", "rank_from": "1", "rank_to": "1", "payload": '{"gold": 1000}'},
    {"name": "top10", "kind": "percentile", "percent": "10", "payload": '{"gems": 5}'},
    {"name": "heavy", "kind": "damage", "damage_min": "100"},
)


def test_a_designer_creates_a_table_with_tiers_and_the_edit_is_audited(designer):
    response = post_table(designer, *GOOD, last_hit_payload='{"title": "Slayer"}')
    assert response.status_code == 302, response.content.decode()[:3000]
    table = RewardTable.objects.get(name="Raid")
    assert [(t.name, t.kind, t.payload) for t in table.tiers.all()] == [
        ("mvp", "rank", {"gold": 1000}),
        ("top10", "percentile", {"gems": 5}),
        ("heavy", "damage", {}),
    ]
    assert table.last_hit_payload == {"title": "Slayer"}
    entry = AuditEntry.objects.get(action="reward_table.create")
    assert entry.actor == "user:designer" and entry.target == f"reward_table:{table.pk}"
    assert [t["name"] for t in entry.detail["tiers"]] == ["mvp", "top10", "heavy"]


@pytest.mark.parametrize(
    "tiers,fields,message",
    [
        (
            (
                {"name": "a", "kind": "rank", "rank_from": "1", "rank_to": "10"},
                {"name": "b", "kind": "rank", "rank_from": "5", "rank_to": ""},
            ),
            {},
            "tier 2: ranks 5.. overlap tier 1&#x27;s ranks 1..10",
        ),
        (
            ({"name": "a", "kind": "rank", "rank_from": "5", "rank_to": "2"},),
            {},
            "the rank range 5..2 is empty",
        ),
        (({"name": "a", "kind": "percentile", "percent": "0"},), {}, "a percent in (0, 100]"),
        (({"name": "a", "kind": "percentile", "percent": "150"},), {}, "a percent in (0, 100]"),
        (
            ({"name": "a", "kind": "damage", "damage_min": "5", "payload": "[1, 2]"},),
            {},
            "must be a JSON object",
        ),
        (({"name": "a", "kind": "damage", "damage_min": "5", "payload": "{oops"},), {}, "Enter a valid JSON"),
        (
            ({"name": "a", "kind": "damage", "damage_min": "5", "payload": '{"x": "' + "y" * 5000 + '"}'},),
            {},
            "at most 4096",
        ),
        (({"name": "last_hit", "kind": "damage", "damage_min": "5"},), {}, "reserved"),
        ((), {"last_hit_payload": '"Slayer"'}, "must be a JSON object"),
    ],
)
def test_invalid_tables_are_refused_with_clear_form_errors(designer, tiers, fields, message):
    response = post_table(designer, *tiers, **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not RewardTable.objects.exists()


def test_view_only_staff_sees_tables_and_previews_but_cannot_edit(viewer, make_boss):
    table = RewardTable.objects.create(name="Raid")
    RewardTier.objects.create(table=table, name="all", kind="damage", damage_min=1)
    change = reverse("admin:bosses_rewardtable_change", args=[table.pk])
    page = viewer.get(change)
    assert page.status_code == 200 and 'name="name"' not in page.content.decode()  # read-only
    assert viewer.post(change, {"name": "Hacked", "min_damage": "1"}).status_code == 403
    assert viewer.get(reverse(ADD_URL)).status_code == 403
    assert (
        viewer.post(reverse("admin:bosses_rewardtable_delete", args=[table.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert RewardTable.objects.get().name == "Raid"
    boss = make_boss()
    preview = reverse("admin:bosses_rewardtable_preview", args=[table.pk])
    assert viewer.get(preview, {"boss": boss.pk}).status_code == 200
    # staff without the view permission: no preview
    stranger = account("stranger", ())
    assert stranger.get(preview, {"boss": boss.pk}).status_code == 403


def counts_of(page: str) -> dict[str, int]:
    return {
        name: int(n)
        for name, n in re.findall(r'<tr data-tier="([\w.-]*)">.*?<td class="players">(\d+)</td></tr>', page)
    }


def test_preview_counts_the_live_leaderboard_then_the_finished_fight(designer, make_boss, make_session):
    response = post_table(
        designer,
        {"name": "mvp", "kind": "rank", "rank_from": "1", "rank_to": "1"},
        {"name": "top50", "kind": "percentile", "percent": "50"},
        {"name": "heavy", "kind": "damage", "damage_min": "100"},
        last_hit_payload='{"title": "Slayer"}',
    )
    assert response.status_code == 302
    table = RewardTable.objects.get()
    boss = make_boss(max_hp=1_000, reward_table=table)
    boss_go_live(boss=boss)
    s = make_session()
    # live: 6 players, e (5) is below min_damage 10; 5 eligible: top 50 % is ranks 1..3
    breakdown = {"a": 300, "b": 200, "c": 150, "d": 120, "f": 40, "e": 5}
    delta_ingest(
        boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=815, breakdown=breakdown
    )
    boss_tick(boss_id=boss.pk, force=True)
    url = reverse("admin:bosses_rewardtable_preview", args=[table.pk])
    page = designer.get(url, {"boss": boss.pk}).content.decode()
    assert "the live leaderboard" in page
    assert counts_of(page) == {"mvp": 1, "top50": 2, "heavy": 1, "": 2}
    assert re.search(r'id="eligible">5<', page) and re.search(r'id="contributors">6<', page)

    # the kill: g lands the last hit; then the fight's contributions are previewed
    delta_ingest(
        boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=2, amount=300, breakdown={"g": 300}
    )
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    page = designer.get(url, {"boss": boss.pk}).content.decode()
    assert "the fight&#x27;s contributions" in page or "the fight's contributions" in page
    # 6 eligible now (g 300 ties a, a first by name): top 50 % is ranks 1..3
    assert counts_of(page) == {"mvp": 1, "top50": 2, "heavy": 2, "": 2}
    assert "Last hit: g" in page


def test_the_boss_form_offers_the_reward_table(admin_client, make_boss):
    table = RewardTable.objects.create(name="Raid")
    boss = make_boss()
    page = admin_client.get(reverse("admin:bosses_bossencounter_change", args=[boss.pk])).content.decode()
    assert 'name="reward_table"' in page and f'<option value="{table.pk}">Raid</option>' in page
