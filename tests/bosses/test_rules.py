"""bosses/rules.py: what a boss may change in each status, and the admin and the services the
API calls giving the same answer for every status and every designer field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bosses import rules, services
from bosses.models import BossEncounter, BossStatus, RewardTable
from core.errors import InvalidTransition
from tests.bosses.test_admin import inline_management_forms

RUNNING_FROZEN = {"slug", "max_hp", "phases", "tick_interval_ms", "starts_at"}


def test_what_each_status_may_change() -> None:
    assert rules.boss_editable_fields(status="draft") == rules.DESIGNER_FIELDS
    for status in ("live", "paused"):
        editable = set(rules.boss_editable_fields(status=status))
        assert editable == set(rules.DESIGNER_FIELDS) - RUNNING_FROZEN
    for status in ("defeated", "expired"):
        assert rules.boss_editable_fields(status=status) == ("name",)
    with pytest.raises(ValueError):
        rules.boss_editable_fields(status="recovering")


def test_every_field_of_a_boss_is_the_designers_or_the_platforms() -> None:
    """A new model field must be given to one side (and, if a designer's, a rule)."""
    editable = {f.name for f in BossEncounter._meta.concrete_fields if f.editable and not f.primary_key}
    auto = {"created_at", "updated_at"}  # auto_now(_add): Django sets them
    assert editable - auto == set(rules.DESIGNER_FIELDS) | set(rules.PLATFORM_FIELDS)
    assert not set(rules.DESIGNER_FIELDS) & set(rules.PLATFORM_FIELDS)
    assert set(rules.FROZEN_WHILE_RUNNING) <= set(rules.DESIGNER_FIELDS)


def test_a_refusal_names_the_field_and_why(make_boss) -> None:
    boss = make_boss(slug="wyrm", max_hp=1_000)
    assert rules.boss_edit_refusal(boss=boss, changes={"max_hp": 5, "slug": "other"}) is None
    boss.status = BossStatus.LIVE
    assert rules.boss_edit_refusal(boss=boss, changes={"name": "Renamed", "crash_policy": "harsh"}) is None
    # the value it holds is no change
    assert rules.boss_edit_refusal(boss=boss, changes={"max_hp": 1_000, "slug": "wyrm"}) is None
    field, reason = rules.boss_edit_refusal(boss=boss, changes={"name": "N", "phases": "60:X", "max_hp": 5})
    assert field == "phases"
    assert reason.startswith("wyrm is live: phases, max_hp cannot change while the fight runs")
    assert "ledger counts from it" in reason and "phase thresholds" in reason
    assert "reset it to a draft" in reason
    boss.status = BossStatus.DEFEATED
    field, reason = rules.boss_edit_refusal(boss=boss, changes={"name": "N", "min_damage": 1})
    assert field == "min_damage"
    assert reason.startswith("wyrm is defeated: its fight has ended and only name can change")


def test_update_writes_only_what_the_status_allows(make_boss) -> None:
    boss = make_boss(slug="wyrm", max_hp=1_000)
    BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.LIVE)
    ends_at = timezone.now() + timedelta(hours=1)
    updated = services.boss_update(
        boss_id=boss.pk, fields={"name": "Renamed", "min_damage": 10, "ends_at": ends_at, "max_hp": 1_000}
    )
    assert (updated.name, updated.min_damage, updated.ends_at) == ("Renamed", 10, ends_at)
    before = BossEncounter.objects.values().get(pk=boss.pk)
    with pytest.raises(InvalidTransition, match="max_hp cannot change while the fight runs") as info:
        services.boss_update(boss_id=boss.pk, fields={"name": "Again", "max_hp": 5})
    assert info.value.extra["field"] == "max_hp"
    assert BossEncounter.objects.values().get(pk=boss.pk) == before  # a refusal writes nothing
    with pytest.raises(InvalidTransition, match="starts_at: the fight has started"):
        services.boss_schedule_set(boss_id=boss.pk, starts_at=timezone.now(), ends_at=ends_at)
    later = ends_at + timedelta(hours=1)
    assert services.boss_schedule_set(boss_id=boss.pk, starts_at=None, ends_at=later).ends_at == later


def test_an_ended_fight_keeps_its_configuration_and_schedule(make_boss) -> None:
    boss = make_boss(slug="wyrm")
    BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.EXPIRED)
    assert services.boss_update(boss_id=boss.pk, fields={"name": "Old Wyrm"}).name == "Old Wyrm"
    with pytest.raises(InvalidTransition, match="its fight has ended"):
        services.boss_update(boss_id=boss.pk, fields={"allow_guests": False})
    with pytest.raises(InvalidTransition, match="its fight has ended"):
        services.boss_schedule_set(boss_id=boss.pk, starts_at=None, ends_at=timezone.now())
    # the schedule it has is no change
    assert services.boss_schedule_set(boss_id=boss.pk, starts_at=None, ends_at=None).status == "expired"


# --- the admin and the services answer alike -------------------------------------------------


def _new_values() -> dict:
    """A valid new value of every designer field, for a boss made by ``make_boss``."""
    now = timezone.now().replace(microsecond=0)
    return {
        "name": "New name",
        "slug": "new-slug",
        "max_hp": 999,
        "phases": "60:Angry",
        "tick_interval_ms": 200,
        "crash_policy": "harsh",
        "heartbeat_interval_ms": 1_500,
        "heartbeat_timeout_ms": 9_000,
        "min_damage": 60,
        "max_damage": 160,
        "attacks_per_second": 5,
        "allow_guests": False,
        "reward_table": RewardTable.objects.get_or_create(name="rules")[0],
        "starts_at": now + timedelta(hours=1),
        "ends_at": now + timedelta(hours=2),
    }


def _form_data(boss: BossEncounter) -> dict[str, str]:
    """The admin change form's POST of ``boss`` as it is (every designer field)."""
    data: dict[str, str] = {}
    for field in rules.DESIGNER_FIELDS:
        value = getattr(boss, field)
        if field in ("starts_at", "ends_at"):
            local = timezone.localtime(value) if value else None
            data[f"{field}_0"] = local.strftime("%Y-%m-%d") if local else ""
            data[f"{field}_1"] = local.strftime("%H:%M:%S") if local else ""
        elif field == "reward_table":
            data[field] = str(value.pk) if value else ""
        elif field == "allow_guests":
            if value:
                data[field] = "on"
        else:
            data[field] = str(value)
    return data


def _admin_changes(admin_client, boss: BossEncounter, field: str, value) -> bool:
    """Whether the admin's change page changed ``field`` of ``boss`` to ``value``."""
    url = reverse("admin:bosses_bossencounter_change", args=[boss.pk])
    page = admin_client.get(url).content.decode()
    changed = BossEncounter(**{**{f: getattr(boss, f) for f in rules.DESIGNER_FIELDS}, field: value})
    reply = admin_client.post(url, {**inline_management_forms(page), **_form_data(changed)})
    assert reply.status_code in (200, 302), reply
    return getattr(BossEncounter.objects.get(pk=boss.pk), field) == value


def _service_changes(boss: BossEncounter, field: str, value) -> bool:
    try:
        services.boss_update(boss_id=boss.pk, fields={field: value})
    except InvalidTransition:
        return False
    return True


@pytest.mark.parametrize("status", [s.value for s in BossStatus])
def test_the_admin_and_the_api_services_give_the_same_answer(admin_client, make_boss, status):
    answers = {}
    for field, value in _new_values().items():
        on_page, by_service = make_boss(), make_boss()
        BossEncounter.objects.filter(pk__in=[on_page.pk, by_service.pk]).update(status=status)
        on_page.refresh_from_db()
        by_service.refresh_from_db()
        if field == "slug":  # two bosses cannot take one slug
            value_page, value_service = "new-slug-page", "new-slug-service"
        else:
            value_page = value_service = value
        admin = _admin_changes(admin_client, on_page, field, value_page)
        service = _service_changes(by_service, field, value_service)
        assert admin == service, (status, field, admin, service)
        answers[field] = admin
    assert {f for f, ok in answers.items() if ok} == set(rules.boss_editable_fields(status=status))


def test_the_admin_form_refuses_a_change_the_status_no_longer_allows(make_boss):
    """A page opened while the boss was a draft shows max_hp editable; the boss went live
    before the save: the form refuses the change with the rule's reason."""
    from bosses.admin import BossEncounterForm

    boss = make_boss(slug="wyrm", max_hp=1_000)
    data = _form_data(boss)
    BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.LIVE)
    boss.refresh_from_db()
    form = BossEncounterForm(instance=boss, data={**data, "max_hp": "5", "name": "Renamed"})
    assert not form.is_valid()
    _, reason = rules.boss_edit_refusal(boss=boss, changes={"max_hp": 5})
    assert form.errors["max_hp"] == [reason]
    assert BossEncounter.objects.get(pk=boss.pk).max_hp == 1_000
