"""The admin shows sagas: steps, amounts, leaderboard, rewards; crash sagas under their boss."""

from __future__ import annotations

import pytest
from django.urls import reverse

from bosses.models import SagaRun
from bosses.sagas.crash import session_fence
from bosses.sagas.victory import boss_victory_run
from bosses.services import boss_go_live, boss_tick
from tests.support.authority import delta_ingest, heartbeat_record


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def test_victory_saga_page_shows_steps_leaderboard_and_rewards(staff, make_boss, make_session):
    boss = make_boss(max_hp=100)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        seq=1,
        amount=120,
        breakdown={"alice": 70, "bob": 50},
    )
    boss_tick(boss_id=boss.pk, force=True)
    saga = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    page = staff.get(reverse("admin:bosses_sagarun_change", args=[saga.pk])).content.decode()
    for text in (
        "freeze",
        "persist_final_state",
        "contributions",
        "leaderboard",
        "rewards",
        "announce",
        "alice",
        "bob",
        "champion",
        "elite",
        "Completed",
    ):
        assert text in page, text
    assert 'name="rewards-0-player"' not in page  # rewards are history: shown, never editable
    listing = staff.get(reverse("admin:bosses_rewardgrant_changelist")).content.decode()
    assert "alice" in listing and "bob" in listing
    contributions = staff.get(reverse("admin:bosses_contribution_changelist")).content.decode()
    assert s.shard_key in contributions


def test_crash_sagas_are_listed_under_their_boss(staff, live_boss, make_session):
    s = make_session()
    heartbeat_record(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, pending=33)
    saga = session_fence(boss=live_boss, shard_key=s.shard_key, epoch=s.epoch)
    page = staff.get(reverse("admin:bosses_bossencounter_change", args=[live_boss.pk])).content.decode()
    assert saga.key in page and "33" in page
    detail = staff.get(reverse("admin:bosses_sagarun_change", args=[saga.pk])).content.decode()
    assert "fence" in detail and "recovered" in detail and "mark_shard" in detail
    assert SagaRun.objects.count() == 1
