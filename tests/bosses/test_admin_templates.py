"""The templates' admin: a new fight from a template, copies, and a fight's frozen
configuration beside what the boss has now."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from bosses.models import BossEncounter, BossTemplate, FightConfig
from bosses.services import boss_end, boss_go_live, boss_reset, boss_update, template_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def template():
    return template_save(
        template=None, fields={"name": "Weekly Golem", "slug": "weekly-golem", "max_hp": 25_000_000}
    )


def test_new_fight_from_a_template_and_copies(admin_client, template):
    url = reverse("admin:bosses_bosstemplate_changelist")
    assert "25,000,000" in admin_client.get(url).content.decode()
    for _ in range(2):
        reply = admin_client.post(
            url, {"action": "new_fight", "_selected_action": [template.pk]}, follow=True
        )
        assert reply.status_code == 200
    bosses = list(BossEncounter.objects.order_by("slug").values_list("slug", "max_hp", "template__slug"))
    assert bosses == [
        ("weekly-golem", 25_000_000, "weekly-golem"),
        ("weekly-golem-2", 25_000_000, "weekly-golem"),
    ]
    admin_client.post(url, {"action": "copy_templates", "_selected_action": [template.pk]})
    assert BossTemplate.objects.get(slug="weekly-golem-copy").max_hp == 25_000_000
    boss_url = reverse("admin:bosses_bossencounter_changelist")
    first = BossEncounter.objects.get(slug="weekly-golem")
    admin_client.post(boss_url, {"action": "copy_bosses", "_selected_action": [first.pk]})
    assert BossEncounter.objects.get(slug="weekly-golem-copy").template == template
    actions = set(AuditEntry.objects.values_list("action", "target"))
    assert ("boss.create", "boss/weekly-golem-2") in actions
    assert ("template.create", "template/weekly-golem-copy") in actions


def test_a_fight_configuration_page_shows_what_changed_since(admin_client, make_boss):
    boss = make_boss(slug="golem", max_hp=25_000_000)
    boss_go_live(boss=boss)
    boss_end(boss=boss)
    boss.refresh_from_db()
    boss_reset(boss=boss)
    boss_update(boss_id=boss.pk, fields={"max_hp": 1_000_000_000})
    config = FightConfig.objects.get(boss=boss, fight=1)
    page = admin_client.get(reverse("admin:bosses_fightconfig_change", args=[config.pk])).content.decode()
    assert "25000000" in page and "1000000000" in page and "max_hp" in page
    boss_page = admin_client.get(
        reverse("admin:bosses_bossencounter_change", args=[boss.pk])
    ).content.decode()
    assert "Fight configurations" in boss_page


def test_a_schedule_is_checked_and_shows_its_next_spawns_and_the_calendar(admin_client, make_boss):
    from datetime import timedelta

    from django.utils import timezone

    from bosses.models import SpawnSchedule

    boss = make_boss(slug="evening-wyrm", name="Evening Wyrm")
    url = reverse("admin:bosses_spawnschedule_add")
    form = {
        "boss": boss.pk,
        "name": "Evenings",
        "timezone": "Europe/Paris",
        "rule": "FREQ=DAILY",
        "start_date": (timezone.now() - timedelta(days=1)).date().isoformat(),
        "start_time": "20:00",
        "duration_s": "1800",
        "blackout_dates": "[]",
        "notice_minutes": "15",
        "enabled": "on",
    }
    refused = admin_client.post(url, {**form, "timezone": "Mars/Olympus"}).content.decode()
    assert "unknown time zone" in refused
    refused = admin_client.post(url, {**form, "rule": "FREQ=SOMETIMES"}).content.decode()
    assert "not an RFC 5545 RRULE" in refused
    assert admin_client.post(url, form).status_code == 302
    schedule = SpawnSchedule.objects.get()
    page = admin_client.get(reverse("admin:bosses_spawnschedule_change", args=[schedule.pk])).content.decode()
    assert page.count("20:00 CE") in (14, 15)  # the next 14 days of evenings, local time
    calendar = admin_client.get(reverse("admin:bosses_spawnschedule_calendar")).content.decode()
    assert calendar.count("Evening Wyrm (evening-wyrm)") in (14, 15)
    assert ("spawn_schedule.create", "boss/evening-wyrm") in set(
        AuditEntry.objects.values_list("action", "target")
    )
