"""The designer admin: validation with clear messages, lifecycle actions through services."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bosses.models import BossEncounter
from bosses.services import boss_end, boss_go_live, boss_schedules_apply
from core import keys
from core.limits import MAX_HP
from core.redis import get_redis

VALID = {
    "name": "Ancient Wyrm",
    "slug": "wyrm",
    "max_hp": "5000000000",
    "phases": "75:Enraged, 50:Frenzy, 25:Last stand",
    "tick_interval_ms": "100",
    "crash_policy": "fair",
    "heartbeat_interval_ms": "1000",
    "heartbeat_timeout_ms": "5000",
    "min_damage": "50",
    "max_damage": "150",
    "attacks_per_second": "10",
}


def inline_management_forms(page: str) -> dict[str, str]:
    """The hidden management-form fields of whatever inlines the admin page shows."""
    return dict(
        re.findall(r'name="([\w-]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)"[^>]*value="(\d*)"', page)
    )


def add(admin_client, **overrides):
    url = reverse("admin:bosses_bossencounter_add")
    management = inline_management_forms(admin_client.get(url).content.decode())
    return admin_client.post(url, {**management, **VALID, **overrides})


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"phases": "50:Half, 75:Enraged"}, "strictly decreasing"),
        ({"phases": "100:Start"}, "inside (0, 100)"),
        ({"phases": "abc"}, "must look like"),
        ({"phases": "x:Enraged"}, "is not a percentage"),
        (
            {
                "starts_at_0": "2026-12-01",
                "starts_at_1": "10:00",
                "ends_at_0": "2026-12-01",
                "ends_at_1": "09:00",
            },
            "end time must be after start time",
        ),
        ({"min_damage": "200", "max_damage": "100"}, "min damage must not exceed max damage"),
        ({"max_hp": "0"}, "greater than or equal to 1"),
        ({"max_hp": str(MAX_HP + 1)}, "less than or equal to"),
        ({"max_hp": "1.5"}, "Enter a whole number"),
        (
            {"heartbeat_timeout_ms": "500", "heartbeat_interval_ms": "1000"},
            "heartbeat timeout must be longer",
        ),
    ],
)
def test_invalid_configuration_is_refused_with_a_clear_message(admin_client, overrides, message):
    response = add(admin_client, **overrides)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not BossEncounter.objects.exists()


def act(admin_client, action, boss):
    """Run an admin action on ``boss`` (messages come back with a capitalized first letter)."""
    return admin_client.post(
        reverse("admin:bosses_bossencounter_changelist"),
        {"action": action, "_selected_action": [boss.pk]},
        follow=True,
    )


def test_lifecycle_actions_drive_the_authority(admin_client):
    assert add(admin_client).status_code == 302
    boss = BossEncounter.objects.get(slug="wyrm")
    r = get_redis()
    state_key = keys.BossKeys(boss.pk).state

    page = act(admin_client, "go_live", boss).content.decode().lower()
    assert "wyrm: go live done" in page
    assert r.hget(state_key, "status") == "live" and r.hget(state_key, "hp") == "5000000000"

    page = act(admin_client, "reset", boss).content.decode().lower()
    assert "cannot reset wyrm while it is live" in page
    assert r.hget(state_key, "status") == "live"

    page = act(admin_client, "resume", boss).content.decode().lower()
    assert "could not resume" in page and "it is live" in page

    act(admin_client, "pause", boss)
    assert r.hget(state_key, "status") == "paused"
    change = admin_client.get(reverse("admin:bosses_bossencounter_change", args=[boss.pk])).content.decode()
    assert "5,000,000,000 / 5,000,000,000 (paused)" in change

    act(admin_client, "resume", boss)
    act(admin_client, "end", boss)
    assert r.hget(state_key, "status") == "expired"
    boss.refresh_from_db()
    assert boss.status == "expired"

    act(admin_client, "reset", boss)
    boss.refresh_from_db()
    assert (boss.status, boss.fight) == ("draft", 2)
    assert not r.exists(state_key)


def test_running_boss_keeps_its_hp_and_phases_read_only(admin_client):
    add(admin_client)
    boss = BossEncounter.objects.get(slug="wyrm")
    act(admin_client, "go_live", boss)
    url = reverse("admin:bosses_bossencounter_change", args=[boss.pk])
    management = inline_management_forms(admin_client.get(url).content.decode())
    response = admin_client.post(url, {**management, **VALID, "max_hp": "7", "name": "Renamed"})
    assert response.status_code == 302
    boss.refresh_from_db()
    assert (boss.max_hp, boss.name) == (5_000_000_000, "Renamed")


def test_reset_clears_a_past_start_time_and_says_so(admin_client, make_boss):
    now = timezone.now()
    boss = make_boss(starts_at=now - timedelta(minutes=5), ends_at=now - timedelta(minutes=1))
    boss_go_live(boss=boss)
    boss_end(boss=boss)

    page = act(admin_client, "reset", boss).content.decode().lower()
    assert "its past start and end time was cleared: set a new schedule" in page
    boss.refresh_from_db()
    assert (boss.status, boss.starts_at, boss.ends_at) == ("draft", None, None)
    assert boss_schedules_apply() == []  # the beat does not relaunch it
    boss.refresh_from_db()
    assert boss.status == "draft"
