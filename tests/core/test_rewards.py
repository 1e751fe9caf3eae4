"""Reward tables as pure data: validation with clear problems, tier evaluation as properties."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import rewards
from core.rewards import DAMAGE, PERCENTILE, RANK, Table, Tier

players_st = st.dictionaries(
    st.text(alphabet="abcdef", min_size=1, max_size=3), st.integers(min_value=0, max_value=60), max_size=40
)


@st.composite
def tier_st(draw, index: int) -> Tier:
    kind = draw(st.sampled_from([RANK, PERCENTILE, DAMAGE]))
    name = f"t{index}"
    if kind == RANK:
        lo = draw(st.integers(1, 30))
        hi = draw(st.one_of(st.none(), st.integers(lo, 40)))
        return Tier(name, RANK, {"i": index}, rank_from=lo, rank_to=hi)
    if kind == PERCENTILE:
        pct = draw(st.fractions(min_value=Fraction(1, 1000), max_value=100, max_denominator=1000))
        return Tier(name, PERCENTILE, {"i": index}, percent=pct)
    return Tier(name, DAMAGE, {"i": index}, damage_min=draw(st.integers(1, 60)))


@st.composite
def table_st(draw) -> Table:
    n = draw(st.integers(0, 6))
    tiers = tuple(draw(tier_st(i)) for i in range(n))
    return Table(tiers=tiers, min_damage=draw(st.integers(1, 30)))


def matches(tier: Tier, *, rank: int, damage: int, eligible: int) -> bool:
    """An independent statement of each kind (percentile without ceil: (rank-1) < eligible*p/100)."""
    if tier.kind == RANK:
        return tier.rank_from <= rank and (tier.rank_to is None or rank <= tier.rank_to)
    if tier.kind == PERCENTILE:
        return (rank - 1) * 100 < eligible * tier.percent
    return damage >= tier.damage_min


@settings(max_examples=300, deadline=None)
@given(table=table_st(), damage=players_st)
def test_each_contributor_gets_at_most_the_first_matching_tier(table, damage):
    out = rewards.tiers_assign(table, damage)
    contributors = {p for p, d in damage.items() if d > 0}
    assert [a.player for a in out] == sorted(contributors, key=lambda p: (-damage[p], p))
    assert len({a.player for a in out}) == len(out)  # one assignment (at most one tier) each
    eligible = sum(1 for p in contributors if damage[p] >= table.min_damage)
    for a in out:
        if damage[a.player] < table.min_damage:
            assert a.tier is None  # the minimum contribution comes first
            continue
        hits = [t for t in table.tiers if matches(t, rank=a.rank, damage=a.damage, eligible=eligible)]
        assert a.tier == (hits[0] if hits else None)  # table order: the first match wins


@settings(max_examples=200, deadline=None)
@given(table=table_st(), damage=players_st, seed=st.integers(0, 2**32))
def test_ties_and_input_order_do_not_change_anything(table, damage, seed):
    items = list(damage.items())
    random.Random(seed).shuffle(items)
    assert rewards.tiers_assign(table, dict(items)) == rewards.tiers_assign(table, damage)
    ranked = rewards.ranking(damage)
    for (_, p1, d1), (_, p2, d2) in zip(ranked, ranked[1:]):
        assert d1 > d2 or (d1 == d2 and p1 < p2)


@settings(max_examples=200, deadline=None)
@given(
    damage=players_st,
    pct=st.fractions(min_value=Fraction(1, 100), max_value=100, max_denominator=100),
    min_damage=st.integers(1, 40),
    extra_small=st.integers(0, 20),
)
def test_percentiles_count_only_eligible_players(damage, pct, min_damage, extra_small):
    table = Table(tiers=(Tier("top", PERCENTILE, percent=pct),), min_damage=min_damage)
    eligible = sum(1 for d in damage.values() if d > 0 and d >= min_damage)
    granted = [a for a in rewards.tiers_assign(table, damage) if a.tier is not None]
    assert len(granted) == -(-eligible * pct // 100)  # ceil: "top 10 %" of 15 is 2 players
    # Players below the minimum change nobody's tier (they are not in the percentile's base).
    padded = {**damage, **{f"zz{i}": min_damage - 1 for i in range(extra_small)}}
    again = {a.player: a.tier for a in rewards.tiers_assign(table, padded)}
    assert {a.player: a.tier for a in granted} == {p: t for p, t in again.items() if t is not None}


def test_the_default_table_is_valid_and_grants_the_three_historic_tiers():
    assert rewards.table_problems(rewards.DEFAULT_TABLE) == []
    damage = {f"p{i:02d}": 100 - i for i in range(15)}
    tiers = [a.tier.name for a in rewards.tiers_assign(rewards.DEFAULT_TABLE, damage)]
    assert tiers == ["champion"] + ["elite"] * 9 + ["participant"] * 5


def test_a_designed_table_grants_by_rank_percentile_and_damage_in_order():
    table = Table(
        tiers=(
            Tier("gold", RANK, {"gold": 1}, rank_from=1, rank_to=2),
            Tier("top20", PERCENTILE, {"gem": 1}, percent=Fraction(20)),
            Tier("big", DAMAGE, {"xp": 1}, damage_min=50),
        ),
        min_damage=10,
    )
    damage = {"a": 100, "b": 90, "c": 80, "d": 80, "e": 60, "f": 40, "g": 20, "h": 10, "i": 9, "j": 0}
    got = {a.player: (a.rank, a.tier.name if a.tier else None) for a in rewards.tiers_assign(table, damage)}
    # 8 eligible (>= 10): top 20 % is ceil(1.6) = 2 ranks, already gold; c and d tie: c first.
    assert got == {
        "a": (1, "gold"),
        "b": (2, "gold"),
        "c": (3, "big"),
        "d": (4, "big"),
        "e": (5, "big"),
        "f": (6, None),
        "g": (7, None),
        "h": (8, None),
        "i": (9, None),
    }


def test_last_hit_is_the_largest_damage_of_the_defeating_tick_ties_by_name():
    assert rewards.last_hit_player({"bob": 30, "alice": 30, "carol": 10}) == "alice"
    assert rewards.last_hit_player({"bob": 31, "alice": 30}) == "bob"
    assert rewards.last_hit_player({}) is None
    assert rewards.last_hit_player({"x": 0}) is None


@pytest.mark.parametrize(
    "tiers,message",
    [
        (
            (Tier("a", RANK, rank_from=1, rank_to=10), Tier("b", RANK, rank_from=5, rank_to=None)),
            "tier 2: ranks 5.. overlap tier 1's ranks 1..10",
        ),
        ((Tier("a", RANK, rank_from=5, rank_to=2),), "tier 1: the rank range 5..2 is empty"),
        ((Tier("a", RANK, rank_from=0, rank_to=2),), "'rank from' >= 1"),
        ((Tier("a", PERCENTILE, percent=Fraction(0)),), "a percent in (0, 100]"),
        ((Tier("a", PERCENTILE, percent=Fraction(101)),), "a percent in (0, 100]"),
        ((Tier("a", DAMAGE),), "a threshold >= 1"),
        ((Tier("a", RANK, [1, 2], rank_from=1),), "must be a JSON object"),
        ((Tier("a", RANK, {"x": "y" * 5000}, rank_from=1),), "at most 4096"),
        ((Tier("last_hit", RANK, rank_from=1),), "reserved"),
        ((Tier("Bad Name", RANK, rank_from=1),), "the name must be"),
        ((Tier("a", "luck"),), "unknown kind"),
    ],
)
def test_invalid_tables_are_refused_with_clear_problems(tiers, message):
    with pytest.raises(rewards.RewardTableInvalid) as err:
        rewards.table_validate(Table(tiers=tiers))
    assert err.value.code == "reward_table_invalid"
    assert message in str(err.value)


def test_table_fields_are_checked_too():
    problems = rewards.table_problems(Table(tiers=(), min_damage=0, last_hit_payload="x"))  # type: ignore[arg-type]
    assert [(p.field, p.tier) for p in problems] == [("min_damage", None), ("last_hit_payload", None)]
    ok = Table(tiers=(Tier("a", PERCENTILE, percent=Fraction(100)),), last_hit_payload={"title": "Slayer"})
    assert rewards.table_validate(ok) is ok
