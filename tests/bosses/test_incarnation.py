"""A fight's incarnation: the identity its authority shares with SQL, so that a database never
adopts or verifies an authority another database (or an earlier fight) seeded."""

from __future__ import annotations

import pytest

from bosses.models import BossEncounter, BossStatus
from bosses.services import boss_end, boss_go_live, boss_reset
from bosses.verification import boss_verify
from core import authority, keys
from core.errors import InvalidTransition
from core.phases import OPENING_PHASE_NAME

FOREIGN = "f" * 32


def seed_foreign(r, boss: BossEncounter) -> None:
    """What another deployment's go-live leaves in this Redis for the same boss id."""
    authority.run(
        r,
        authority.seed_call(
            boss_id=boss.pk,
            max_hp=boss.max_hp,
            phases=[],
            opening=OPENING_PHASE_NAME,
            fight=boss.fight,
            slug=boss.slug,
            min_tick_ms=0,
            floors={},
            incarnation=FOREIGN,
        ),
    )


@pytest.mark.django_db
def test_go_live_records_one_incarnation_in_sql_and_redis(make_boss, r):
    boss = make_boss()
    boss_go_live(boss=boss)
    stored = BossEncounter.objects.get(pk=boss.pk).incarnation
    assert len(stored) == 32 and stored == r.hget(keys.BossKeys(boss.pk).state, "incarnation")
    boss_end(boss=boss)
    boss_reset(boss=boss)
    assert BossEncounter.objects.get(pk=boss.pk).incarnation == ""
    boss_go_live(boss=boss)
    assert BossEncounter.objects.get(pk=boss.pk).incarnation not in ("", stored)


@pytest.mark.django_db
def test_go_live_refuses_an_authority_seeded_by_another_database(make_boss, r):
    boss = make_boss()
    seed_foreign(r, boss)
    before = r.hgetall(keys.BossKeys(boss.pk).state)
    with pytest.raises(InvalidTransition, match="belongs to another database or fight"):
        boss_go_live(boss=boss)
    assert r.hgetall(keys.BossKeys(boss.pk).state) == before
    assert BossEncounter.objects.get(pk=boss.pk).status == BossStatus.DRAFT


@pytest.mark.django_db
def test_verify_names_a_foreign_authority_instead_of_comparing_books(make_boss, r):
    boss = make_boss()
    seed_foreign(r, boss)
    BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.LIVE, incarnation="a" * 32)
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    assert not report.ok
    [problem] = report.problems
    assert FOREIGN in problem and "a" * 32 in problem and "REDIS_URL" in problem
