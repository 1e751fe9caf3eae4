"""core/phases.py: parsing phases, their HP thresholds, the phase of an HP, and that the
Python rule and the authority's Lua rule (tick.lua) name the same phase at every HP."""

from __future__ import annotations

import re

import pytest

from core import authority
from core.errors import InvalidInput
from core.phases import OPENING_PHASE_NAME, parse_phases, phase_of, phase_thresholds
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
