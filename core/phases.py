"""A boss's phases: parsing the designer's text, HP thresholds, and the phase an HP is in.

Every reader of phases comes here: go-live seeds the authority with the thresholds and
:data:`OPENING_PHASE_NAME`; the restore saga, the fight report and the API's timeline
recompute the phase of an archived HP with :func:`phase_of`. The authority applies the same
rule in Lua on every tick (core/lua/tick.lua): the phase is the last threshold at or above
the HP, or the opening phase above the first one.
"""

from __future__ import annotations

import math
import re

from core.errors import InvalidInput
from core.limits import FULL_DAMAGE_BP

# The phase a fight opens in, above the first threshold (index 0). Seeded into the
# authority (its ``opening`` field), so tick.lua names it too.
OPENING_PHASE_NAME = "Opening"
PHASE_NAME_RE = re.compile(r"^[^:,]{1,40}$")
# The highest regeneration a phase may have (HP per second): rate x elapsed ms stays an exact
# integer in Lua's doubles for over 100 days between two ticks.
MAX_REGEN_PER_S = 1_000_000
# A mechanic at the end of a phase's text: ``takes 75%`` (the damage-taken multiplier, at most
# two decimals) or ``regen 50/s`` (HP per second).
MECHANIC_RE = re.compile(
    r"^(?P<name>.*?)\s+(?:(?P<kind>takes)\s+(?P<pct>\d{1,3}(?:\.\d{1,2})?)\s*%"
    r"|(?P<kind2>regen)\s+(?P<rate>\d{1,7})\s*/\s*s)$",
    re.IGNORECASE,
)


def _takes(raw: str, pct: str) -> int:
    bp = round(float(pct) * 100)
    if bp > FULL_DAMAGE_BP:
        raise InvalidInput(
            f'phase "{raw.strip()}": damage taken must be within 0-100 % (a phase takes at most '
            "every point of damage)",
            field="phases",
        )
    return bp


def _regen(raw: str, rate: str) -> int:
    per_s = int(rate)
    if per_s > MAX_REGEN_PER_S:
        raise InvalidInput(
            f'phase "{raw.strip()}": regeneration must be at most {MAX_REGEN_PER_S:,} HP per second',
            field="phases",
        )
    return per_s


def _split_mechanics(raw: str, name: str) -> tuple[str, int, int]:
    """``(name, damage_taken_bp, regen_per_s)`` of one phase's text after the colon: the name,
    then ``takes N%`` and ``regen N/s`` in either order (each at most once)."""
    bp, regen = FULL_DAMAGE_BP, 0
    seen: set[str] = set()
    while True:
        m = MECHANIC_RE.match(" " + name)  # the space: a phase with no name before a mechanic
        kind = (m["kind"] or m["kind2"] or "").lower() if m else ""
        if m is None or kind in seen:
            break
        seen.add(kind)
        if kind == "takes":
            bp = _takes(raw, m["pct"])
        else:
            regen = _regen(raw, m["rate"])
        name = m["name"].strip()
    if re.search(r"\btakes\b", name, re.IGNORECASE):
        raise InvalidInput(
            f'phase "{raw.strip()}": write the damage taken as "takes 75%" (0-100, at most two '
            "decimals) after the name",
            field="phases",
        )
    if re.search(r"\bregen\b", name, re.IGNORECASE):
        raise InvalidInput(
            f'phase "{raw.strip()}": write regeneration as "regen 50/s" (whole HP per second) after the name',
            field="phases",
        )
    return name, bp, regen


def parse_phase_mechanics(text: str) -> list[tuple[float, str, int, int]]:
    """Parse ``"75:Enraged takes 75% regen 50/s, 50:Frenzy"`` into
    ``[(75.0, "Enraged", 7500, 50), (50.0, "Frenzy", 10000, 0)]``: percentage, name, the
    damage-taken multiplier in basis points (:data:`FULL_DAMAGE_BP` when not given) and the
    regeneration in HP per second (0 when not given).

    Percentages must be strictly decreasing inside (0, 100); names 1-40 characters; the
    multiplier 0-100 % with at most two decimals (a whole number of basis points); the
    regeneration a whole number up to :data:`MAX_REGEN_PER_S`.
    """
    phases: list[tuple[float, str, int, int]] = []
    text = (text or "").strip()
    if not text:
        return phases
    for raw in text.split(","):
        pct_text, sep, rest = raw.strip().partition(":")
        name, bp, regen = _split_mechanics(raw, rest.strip())
        if not sep or not PHASE_NAME_RE.match(name):
            raise InvalidInput(
                f'phase "{raw.strip()}" must look like "75:Enraged" or "75:Enraged takes 75% regen 50/s" '
                "(name 1-40 characters)",
                field="phases",
            )
        pct = _percentage(raw, pct_text)
        if phases and pct >= phases[-1][0]:
            raise InvalidInput(
                f"phase percentages must be strictly decreasing: {pct:g} after {phases[-1][0]:g}",
                field="phases",
            )
        phases.append((pct, name, bp, regen))
    return phases


def _percentage(raw: str, pct_text: str) -> float:
    try:
        pct = float(pct_text)
    except ValueError:
        raise InvalidInput(
            f'phase "{raw.strip()}": "{pct_text.strip()}" is not a percentage', field="phases"
        ) from None
    if not (0 < pct < 100) or math.isnan(pct):
        raise InvalidInput(f'phase "{raw.strip()}": percentage must be inside (0, 100)', field="phases")
    return pct


def parse_phases(text: str) -> list[tuple[float, str]]:
    """Parse ``"75:Enraged, 50:Frenzy"`` into ``[(75.0, "Enraged"), (50.0, "Frenzy")]``
    (the mechanics of :func:`parse_phase_mechanics` left out)."""
    return [(pct, name) for pct, name, _bp, _regen in parse_phase_mechanics(text)]


def phase_damage_taken(text: str) -> list[int]:
    """The damage-taken multiplier (basis points) of every phase, the opening phase first."""
    return [FULL_DAMAGE_BP, *(bp for _pct, _name, bp, _regen in parse_phase_mechanics(text))]


def phase_regen(text: str) -> list[int]:
    """The regeneration (HP per second) of every phase, the opening phase (none) first."""
    return [0, *(regen for _pct, _name, _bp, regen in parse_phase_mechanics(text))]


def authority_phases(
    thresholds: list[tuple[int, str]], damage_taken: list[int], regen: list[int]
) -> list[list[object]]:
    """The authority's ``phases`` field: ``[[at_hp, name, damage_taken_bp, regen_per_s], ...]``
    (tick.lua)."""
    return [[hp, name, damage_taken[i + 1], regen[i + 1]] for i, (hp, name) in enumerate(thresholds)]


def regen_heal(*, per_s: int, elapsed_ms: int, carry: int, room: int) -> tuple[int, int]:
    """``(healed, carry)`` of one tick as tick.lua computes it: ``per_s x elapsed_ms + carry``
    thousandths of HP, the whole HP healed up to ``room`` (max_hp - hp), the thousandths left
    carried to the next tick (none once capped, or without regeneration)."""
    milli = per_s * max(0, elapsed_ms) + carry
    whole = milli // 1000
    if per_s == 0 or whole > room:
        return min(whole, room), 0
    return whole, milli - whole * 1000


def damage_taken_split(total: int, bp: int) -> tuple[int, int]:
    """``(counted, mitigated)`` of ``total`` damage under a ``bp`` multiplier, as tick.lua
    splits it: counted = floor(total * bp / 10,000), mitigated the remainder."""
    counted = (total // FULL_DAMAGE_BP) * bp + (total % FULL_DAMAGE_BP) * bp // FULL_DAMAGE_BP
    return counted, total - counted


def phase_thresholds(phases: list[tuple[float, str]], max_hp: int) -> list[tuple[int, str]]:
    """Percent phases -> HP thresholds (a phase starts when hp <= threshold)."""
    return [(max_hp * int(round(pct * 1000)) // 100_000, name) for pct, name in phases]


def phase_of(thresholds: list[tuple[int, str]], hp: int) -> tuple[int, str]:
    """``(index, name)`` of the phase ``hp`` is in: the last threshold at or above ``hp``
    (1-based), or ``(0, OPENING_PHASE_NAME)`` above the first one (as tick.lua decides)."""
    phase, name = 0, OPENING_PHASE_NAME
    for i, (at_hp, at_name) in enumerate(thresholds, start=1):
        if hp <= at_hp:
            phase, name = i, at_name
    return phase, name
