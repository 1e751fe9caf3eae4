"""core/phases.py: parsing phases, their HP thresholds, the phase of an HP, and that the
Python rule and the authority's Lua rule (tick.lua) name the same phase at every HP."""

from __future__ import annotations

import re

import pytest

from core import authority
from core.errors import InvalidInput
from core.phases import (
    FULL_DAMAGE_BP,
    OPENING_PHASE_NAME,
    damage_taken_split,
    parse_phase_mechanics,
    parse_phases,
    phase_damage_taken,
    phase_of,
    phase_regen,
    phase_thresholds,
    regen_heal,
)
from tests.support.processes import ROOT

PHASES = "75:Enraged, 50:Frenzy, 25:Last stand"


def test_parse_phases_reads_percentages_and_names() -> None:
    assert parse_phases(PHASES) == [(75.0, "Enraged"), (50.0, "Frenzy"), (25.0, "Last stand")]
    assert parse_phases(" 12.5 : Low ") == [(12.5, "Low")]
    assert parse_phases("") == []
    assert parse_phases("   ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50:Half, 75:Enraged", "strictly decreasing"),
        ("50:Half, 50:Again", "strictly decreasing"),
        ("x:Enraged", "is not a percentage"),
        ("100:Full", "inside (0, 100)"),
        ("0:Dead", "inside (0, 100)"),
        ("nan:Odd", "inside (0, 100)"),
        ("75", 'must look like "75:Enraged"'),
        ("75:", 'must look like "75:Enraged"'),
        ("75:" + "n" * 41, 'must look like "75:Enraged"'),
    ],
)
def test_parse_phases_refuses_bad_text_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as info:
        parse_phases(text)
    assert info.value.extra["field"] == "phases"


def test_thresholds_are_whole_hp_rounded_down() -> None:
    assert phase_thresholds(parse_phases(PHASES), 1_000) == [
        (750, "Enraged"),
        (500, "Frenzy"),
        (250, "Last stand"),
    ]
    assert phase_thresholds([(33.3333, "Third")], 10) == [(3, "Third")]
    assert phase_thresholds([], 1_000) == []


def test_phase_of_an_hp() -> None:
    thresholds = phase_thresholds(parse_phases(PHASES), 1_000)
    assert phase_of(thresholds, 1_000) == (0, OPENING_PHASE_NAME)
    assert phase_of(thresholds, 751) == (0, OPENING_PHASE_NAME)
    assert phase_of(thresholds, 750) == (1, "Enraged")  # a phase starts at its threshold
    assert phase_of(thresholds, 500) == (2, "Frenzy")
    assert phase_of(thresholds, 0) == (3, "Last stand")
    assert phase_of([], 0) == (0, OPENING_PHASE_NAME)


def test_the_authority_names_the_phase_phase_of_names(r) -> None:
    """Seed a real authority, hit it down to 0 in uneven steps: after every tick the phase
    tick.lua stored is the one phase_of gives for the same HP."""
    boss_id, max_hp = 1, 1_000
    thresholds = phase_thresholds(parse_phases(PHASES), max_hp)
    authority.run(
        r,
        authority.seed_call(
            boss_id=boss_id,
            max_hp=max_hp,
            phases=thresholds,
            opening=OPENING_PHASE_NAME,
            fight=1,
            slug="phases",
            min_tick_ms=0,
            floors={},
        ),
    )
    seeded = authority.read_state(r, boss_id)
    assert seeded is not None
    assert (seeded.phase, seeded.phase_name) == phase_of(thresholds, max_hp)
    seen = set()
    for seq, amount in enumerate([249, 1, 1, 248, 1, 250, 100, 300], start=1):
        ingest = authority.ingest_call(boss_id=boss_id, shard_key="eu-1", epoch=1, seq=seq, amount=amount)
        assert authority.run(r, ingest).code == "ok"
        out = authority.run(r, authority.tick_call(boss_id=boss_id, force=True))
        assert out.code == "applied"
        assert (out.phase, out.phase_name) == phase_of(thresholds, out.hp), out.hp
        seen.add(out.phase)
    assert out.hp == 0
    assert seen == {0, 1, 2, 3}


PRODUCT = ("core", "bosses", "shards", "api", "transport", "webhooks", "audit", "liveops")


def test_the_opening_phase_has_one_name_and_phase_of_one_body() -> None:
    """No product module but core/phases.py spells the opening phase or re-implements phase_of."""
    found = [
        f"{path.relative_to(ROOT)}: {pattern}"
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "core" / "phases.py"
        for pattern in (f'"{OPENING_PHASE_NAME}"', "def _phase_of", "OPENING_PHASE =")
        if pattern in path.read_text()
    ]
    assert found == []


def test_phases_carry_a_damage_taken_multiplier_in_basis_points() -> None:
    text = "75:Enraged takes 75%, 50:Frenzy, 25:Last stand takes 12.5 %"
    assert parse_phase_mechanics(text) == [
        (75.0, "Enraged", 7_500, 0),
        (50.0, "Frenzy", FULL_DAMAGE_BP, 0),
        (25.0, "Last stand", 1_250, 0),
    ]
    assert parse_phases(text) == [(75.0, "Enraged"), (50.0, "Frenzy"), (25.0, "Last stand")]
    assert phase_damage_taken(text) == [FULL_DAMAGE_BP, 7_500, FULL_DAMAGE_BP, 1_250]
    assert phase_damage_taken("") == [FULL_DAMAGE_BP]
    assert parse_phase_mechanics("60:Immune takes 0%") == [(60.0, "Immune", 0, 0)]


def test_phases_carry_a_regeneration_in_hp_per_second() -> None:
    text = "75:Enraged takes 75% regen 50/s, 50:Frenzy regen 3 / s takes 10%, 25:Last stand"
    assert parse_phase_mechanics(text) == [
        (75.0, "Enraged", 7_500, 50),
        (50.0, "Frenzy", 1_000, 3),
        (25.0, "Last stand", FULL_DAMAGE_BP, 0),
    ]
    assert phase_regen(text) == [0, 50, 3, 0]
    assert parse_phases(text) == [(75.0, "Enraged"), (50.0, "Frenzy"), (25.0, "Last stand")]


def test_regeneration_heals_whole_hp_and_carries_the_thousandths() -> None:
    assert regen_heal(per_s=3, elapsed_ms=100, carry=900, room=10) == (1, 200)  # 0.3 + 0.9 HP
    assert regen_heal(per_s=3, elapsed_ms=100, carry=0, room=10) == (0, 300)
    assert regen_heal(per_s=50, elapsed_ms=1_000, carry=0, room=20) == (20, 0)  # capped: no carry
    assert regen_heal(per_s=0, elapsed_ms=10**9, carry=0, room=5) == (0, 0)
    assert regen_heal(per_s=7, elapsed_ms=-5, carry=10, room=5) == (0, 10)  # a clock step back


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("75:Enraged takes 101%", "damage taken must be within 0-100 %"),
        ("75:Enraged takes 75", 'write the damage taken as "takes 75%"'),
        ("75:Enraged takes 7.505%", 'write the damage taken as "takes 75%"'),
        ("75:Enraged takes -5%", 'write the damage taken as "takes 75%"'),
        ("75: takes 50%", 'must look like "75:Enraged" or "75:Enraged takes 75% regen 50/s"'),
        ("75:Healer regen 5", 'write regeneration as "regen 50/s"'),
        ("75:Healer regen 1.5/s", 'write regeneration as "regen 50/s"'),
        ("75:Healer regen 2000000/s", "regeneration must be at most 1,000,000 HP per second"),
        ("75:Healer regen 5/s regen 6/s", 'write regeneration as "regen 50/s"'),
    ],
)
def test_a_bad_multiplier_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as info:
        parse_phase_mechanics(text)
    assert info.value.extra["field"] == "phases"


def test_the_split_rounds_the_counted_share_down_exactly() -> None:
    assert damage_taken_split(12_345, 7_500) == (9_258, 3_087)  # floor(9258.75)
    big = 9_007_199_254_740_993  # past the doubles' exact integers: still exact
    counted, mitigated = damage_taken_split(big, 9_999)
    assert counted == big * 9_999 // 10_000 and counted + mitigated == big
    assert damage_taken_split(5, 0) == (0, 5)
    assert damage_taken_split(5, FULL_DAMAGE_BP) == (5, 0)
