"""The simulator's boss setup (demo, fight, bench) owns its boss's keys on its Redis."""

from __future__ import annotations

import pytest

from bosses.verification import boss_verify
from core import keys
from tests.bosses.test_incarnation import FOREIGN, seed_foreign
from tools.simsetup import sim_boss_prepare

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("ours", ["draft", "live"])
def test_another_databases_authority_for_the_same_boss_id_is_replaced(make_boss, r, ours):
    """Another checkout's demo left boss #N live in this Redis; this database's boss #N is a
    draft (a fresh db.sqlite3) or believes itself live: the demo starts its own fight anyway."""
    boss = make_boss(slug="sim-demo")
    if ours == "live":
        type(boss).objects.filter(pk=boss.pk).update(status="live", incarnation="a" * 32)
    seed_foreign(r, boss)
    setup = sim_boss_prepare(slug="sim-demo", name="Sim", max_hp=5_000)
    boss = setup.boss
    assert boss.status == "live" and boss.incarnation not in ("", FOREIGN)
    assert r.hget(keys.BossKeys(boss.pk).state, "incarnation") == boss.incarnation
    report = boss_verify(boss=boss)
    assert report.ok and report.max_hp == 5_000, report.problems
