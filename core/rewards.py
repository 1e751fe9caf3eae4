"""Reward tables as pure data: validation and tier evaluation (no Django; docs/rewards.md).

A table is an ordered list of tiers and a minimum contribution. Players are ranked by damage
(most first, ties by name: a total order, so every evaluation is deterministic). A player
whose damage is below ``min_damage`` (or not positive) is not *eligible* and gets nothing.
Every eligible player gets the FIRST tier, in table order, that matches:

- ``rank``:       ``rank_from <= rank <= rank_to`` (``rank_to`` None: no upper bound);
- ``percentile``: ``rank <= ceil(eligible * percent / 100)``, where ``eligible`` is the number
                  of eligible players (so "top 10 %" of 15 eligible players is the top 2);
- ``damage``:     ``damage >= damage_min``;

and nothing when none matches. Eligible players are exactly ranks ``1..eligible`` (damage
orders the ranking), so ``rank`` is both the rank among all contributors and among the
eligible ones. The ``last_hit`` extra goes to the player credited with the killing blow
(:func:`last_hit_player`) when the table has a ``last_hit_payload`` and that player is eligible.

Streaming callers (the victory saga) rank in SQL and call :func:`tier_for` row by row;
:func:`tiers_assign` ranks a whole mapping at once (tests, small previews).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from core.errors import InvalidInput

RANK, PERCENTILE, DAMAGE = "rank", "percentile", "damage"
KINDS = (RANK, PERCENTILE, DAMAGE)
LAST_HIT = "last_hit"
# A grant copies its tier's payload into one JSON column per player: keep it small.
PAYLOAD_MAX_BYTES = 4_096
TIERS_MAX = 50
TIER_NAME_MAX = 16  # RewardGrant.tier
TIER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class RewardTableInvalid(InvalidInput):
    """A reward table that cannot be used; ``problems`` lists every reason."""

    code = "reward_table_invalid"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems), problems=problems)
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """One reason a table is invalid: ``tier`` is the tier's index (None: the table itself)."""

    message: str
    field: str = ""
    tier: int | None = None

    def __str__(self) -> str:
        where = f"tier {self.tier + 1}: " if self.tier is not None else ""
        return f"{where}{self.message}"


@dataclass(frozen=True)
class Tier:
    """One tier: ``name`` is the code the game sees, ``payload`` what it grants."""

    name: str
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    rank_from: int | None = None
    rank_to: int | None = None
    percent: Fraction | None = None
    damage_min: int | None = None


@dataclass(frozen=True)
class Table:
    """An ordered list of tiers, the minimum damage to get anything, the optional last-hit payload."""

    tiers: tuple[Tier, ...]
    min_damage: int = 1
    last_hit_payload: Mapping[str, Any] | None = None


# A boss without a designed table: rank 1 champion, ranks 2-10 elite, every other contributor
# participant; no last-hit bonus, empty payloads.
DEFAULT_TABLE = Table(
    tiers=(
        Tier("champion", RANK, rank_from=1, rank_to=1),
        Tier("elite", RANK, rank_from=2, rank_to=10),
        Tier("participant", RANK, rank_from=11, rank_to=None),
    ),
    min_damage=1,
)


@dataclass(frozen=True)
class Assignment:
    """A player's place and reward (``tier`` None: nothing)."""

    rank: int
    player: str
    damage: int
    tier: Tier | None


# --- validation ----------------------------------------------------------------------------


def payload_problem(payload: object) -> str | None:
    """Why ``payload`` is not a usable grant payload (a JSON object within the size bound), or None."""
    if not isinstance(payload, dict):
        return 'the payload must be a JSON object, e.g. {"gold": 100}'
    try:
        size = len(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        return f"the payload is not plain JSON: {exc}"
    if size > PAYLOAD_MAX_BYTES:
        return f"the payload is {size} bytes, at most {PAYLOAD_MAX_BYTES}"
    return None


def tier_problems(tier: Tier, *, index: int | None = None) -> list[Problem]:
    """What is wrong with one tier on its own (its kind's bounds, its name, its payload)."""
    out: list[Problem] = []

    def bad(message: str, field_name: str) -> None:
        out.append(Problem(message, field_name, index))

    if not tier.name or len(tier.name) > TIER_NAME_MAX or not TIER_NAME_RE.match(tier.name):
        bad(f"the name must be 1 to {TIER_NAME_MAX} characters of a-z, 0-9, '_', '.', '-'", "name")
    elif tier.name == LAST_HIT:
        bad(f"{LAST_HIT!r} is reserved for the last-hit reward", "name")
    if tier.kind == RANK:
        if tier.rank_from is None or tier.rank_from < 1:
            bad("a rank tier needs 'rank from' >= 1", "rank_from")
        elif tier.rank_to is not None and tier.rank_to < tier.rank_from:
            bad(f"the rank range {tier.rank_from}..{tier.rank_to} is empty", "rank_to")
    elif tier.kind == PERCENTILE:
        if tier.percent is None or not 0 < tier.percent <= 100:
            bad("a percentile tier needs a percent in (0, 100]", "percent")
    elif tier.kind == DAMAGE:
        if tier.damage_min is None or tier.damage_min < 1:
            bad("a damage tier needs a threshold >= 1", "damage_min")
    else:
        bad(f"unknown kind {tier.kind!r} (one of {', '.join(KINDS)})", "kind")
    problem = payload_problem(tier.payload)
    if problem:
        bad(problem, "payload")
    return out


def table_problems(table: Table) -> list[Problem]:
    """Every problem of ``table``: its own fields, each tier, and overlapping rank ranges."""
    out: list[Problem] = []
    if table.min_damage < 1:
        out.append(Problem("the minimum damage must be >= 1", "min_damage"))
    if table.last_hit_payload is not None:
        problem = payload_problem(table.last_hit_payload)
        if problem:
            out.append(Problem(problem, "last_hit_payload"))
    if len(table.tiers) > TIERS_MAX:
        out.append(Problem(f"a table has at most {TIERS_MAX} tiers, not {len(table.tiers)}"))
    seen: list[tuple[int, int, float]] = []  # (index, from, to) of the valid rank tiers so far
    for i, tier in enumerate(table.tiers):
        own = tier_problems(tier, index=i)
        out += own
        if tier.kind != RANK or own or tier.rank_from is None:
            continue
        hi: float = math.inf if tier.rank_to is None else tier.rank_to
        for j, lo_j, hi_j in seen:
            if tier.rank_from <= hi_j and lo_j <= hi:
                out.append(
                    Problem(
                        f"ranks {_range(tier.rank_from, tier.rank_to)} overlap tier {j + 1}'s "
                        f"ranks {_range(lo_j, None if hi_j == math.inf else int(hi_j))}",
                        "rank_from",
                        i,
                    )
                )
                break
        seen.append((i, tier.rank_from, hi))
    return out


def _range(lo: int, hi: int | None) -> str:
    return f"{lo}..{'' if hi is None else hi}"


def table_validate(table: Table) -> Table:
    """``table`` if it is valid, else :class:`RewardTableInvalid` with every problem."""
    problems = table_problems(table)
    if problems:
        raise RewardTableInvalid(problems)
    return table


# --- evaluation ----------------------------------------------------------------------------


def percentile_cutoff(percent: Fraction, eligible: int) -> int:
    """The last rank inside the top ``percent`` % of ``eligible`` players (rounded up)."""
    return math.ceil(Fraction(percent) * eligible / 100)


def is_eligible(table: Table, damage: int) -> bool:
    """Whether a player with ``damage`` gets anything at all under ``table``."""
    return damage > 0 and damage >= table.min_damage


def tier_for(table: Table, *, rank: int, damage: int, eligible: int) -> Tier | None:
    """The first tier of ``table`` matching the player ranked ``rank`` with ``damage``.

    ``eligible`` is the number of eligible players of the fight (the base of percentiles).
    None when the player is not eligible or no tier matches.
    """
    return tier_matcher(table, eligible=eligible)(rank, damage)


def tier_matcher(table: Table, *, eligible: int) -> Callable[[int, int], Tier | None]:
    """:func:`tier_for` with the percentile cutoffs of ``eligible`` computed once (streaming)."""
    rules: list[tuple[Tier, int, int | None, int]] = []  # (tier, rank lo, rank hi, damage lo)
    for tier in table.tiers:
        if tier.kind == RANK:
            assert tier.rank_from is not None
            rules.append((tier, tier.rank_from, tier.rank_to, 0))
        elif tier.kind == PERCENTILE:
            assert tier.percent is not None
            rules.append((tier, 1, percentile_cutoff(tier.percent, eligible), 0))
        elif tier.kind == DAMAGE:
            assert tier.damage_min is not None
            rules.append((tier, 1, None, tier.damage_min))

    def match(rank: int, damage: int) -> Tier | None:
        if not is_eligible(table, damage):
            return None
        for tier, lo, hi, dmg in rules:
            if lo <= rank and (hi is None or rank <= hi) and damage >= dmg:
                return tier
        return None

    return match


def ranking(damage: Mapping[str, int]) -> list[tuple[int, str, int]]:
    """``[(rank, player, damage)]`` of the players with positive damage: most first, ties by name."""
    order = sorted(((p, d) for p, d in damage.items() if d > 0), key=lambda x: (-x[1], x[0]))
    return [(i + 1, p, d) for i, (p, d) in enumerate(order)]


def eligible_count(table: Table, damages: Iterable[int]) -> int:
    """How many of ``damages`` are eligible under ``table``."""
    return sum(1 for d in damages if is_eligible(table, d))


def tiers_assign(table: Table, damage: Mapping[str, int]) -> list[Assignment]:
    """Rank ``damage`` and give every contributor its tier (None: nothing). Whole-mapping form."""
    match = tier_matcher(table, eligible=eligible_count(table, damage.values()))
    return [Assignment(rank, player, dmg, match(rank, dmg)) for rank, player, dmg in ranking(damage)]


def last_hit_player(breakdown: Mapping[str, int]) -> str | None:
    """The player credited with the killing blow, from the defeating tick's per-player breakdown.

    The largest damage in that tick wins, ties by name (the smallest); None without a breakdown.
    """
    best = [(-d, p) for p, d in breakdown.items() if d > 0]
    return min(best)[1] if best else None


@dataclass
class TierCount:
    """How many players a tier would grant, for previews."""

    name: str
    kind: str
    players: int = 0


@dataclass
class Preview:
    """What a table grants against a ranking: counts per tier (table order) and the first rows."""

    eligible: int
    contributors: int
    counts: list[TierCount]
    nothing: int
    rows: list[Assignment]
    last_hit: str | None = None


def preview_build(
    table: Table,
    ranked: Iterator[tuple[int, str, int]] | Iterable[tuple[int, str, int]],
    *,
    eligible: int,
    last_hit: str | None = None,
    first_rows: int = 20,
) -> Preview:
    """Stream ``ranked`` (``(rank, player, damage)``, best first) through ``table``."""
    counts = [TierCount(t.name, t.kind) for t in table.tiers]
    index = {id(t): i for i, t in enumerate(table.tiers)}
    preview = Preview(eligible=eligible, contributors=0, counts=counts, nothing=0, rows=[])
    match = tier_matcher(table, eligible=eligible)
    for rank, player, dmg in ranked:
        preview.contributors += 1
        tier = match(rank, dmg)
        if tier is None:
            preview.nothing += 1
        else:
            counts[index[id(tier)]].players += 1
        if len(preview.rows) < first_rows:
            preview.rows.append(Assignment(rank, player, dmg, tier))
    preview.last_hit = last_hit if table.last_hit_payload is not None else None
    return preview
