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
# ``"Enraged takes 75%"``: the phase's damage-taken multiplier, at most two decimals.
TAKES_RE = re.compile(r"^(?P<name>.*?)\s+takes\s+(?P<pct>\d{1,3}(?:\.\d{1,2})?)\s*%$", re.IGNORECASE)


def _split_mechanics(raw: str, name: str) -> tuple[str, int]:
    """``(name, damage_taken_bp)`` of one phase's text after the colon."""
    m = TAKES_RE.match(" " + name)  # the space: a phase with no name before "takes"
    if m is None:
        if re.search(r"\btakes\b", name, re.IGNORECASE):
            raise InvalidInput(
                f'phase "{raw.strip()}": write the damage taken as "takes 75%" (0-100, at most two '
                "decimals) after the name",
                field="phases",
            )
        return name, FULL_DAMAGE_BP
    bp = round(float(m["pct"]) * 100)
    if bp > FULL_DAMAGE_BP:
        raise InvalidInput(
            f'phase "{raw.strip()}": damage taken must be within 0-100 % (a phase takes at most '
            "every point of damage)",
            field="phases",
        )
    return m["name"].strip(), bp


def parse_phase_mechanics(text: str) -> list[tuple[float, str, int]]:
    """Parse ``"75:Enraged takes 75%, 50:Frenzy"`` into
    ``[(75.0, "Enraged", 7500), (50.0, "Frenzy", 10000)]``: percentage, name and the
    damage-taken multiplier in basis points (:data:`FULL_DAMAGE_BP` when not given).

    Percentages must be strictly decreasing inside (0, 100); names 1-40 characters; the
    multiplier 0-100 % with at most two decimals (a whole number of basis points).
    """
    phases: list[tuple[float, str, int]] = []
    text = (text or "").strip()
    if not text:
        return phases
    for raw in text.split(","):
        pct_text, sep, rest = raw.strip().partition(":")
        name, bp = _split_mechanics(raw, rest.strip())
        if not sep or not PHASE_NAME_RE.match(name):
            raise InvalidInput(
                f'phase "{raw.strip()}" must look like "75:Enraged" or "75:Enraged takes 75%" '
                "(name 1-40 characters)",
                field="phases",
            )
        pct = _percentage(raw, pct_text)
        if phases and pct >= phases[-1][0]:
            raise InvalidInput(
                f"phase percentages must be strictly decreasing: {pct:g} after {phases[-1][0]:g}",
                field="phases",
            )
        phases.append((pct, name, bp))
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
    return [(pct, name) for pct, name, _bp in parse_phase_mechanics(text)]


def phase_damage_taken(text: str) -> list[int]:
    """The damage-taken multiplier (basis points) of every phase, the opening phase first."""
    return [FULL_DAMAGE_BP, *(bp for _pct, _name, bp in parse_phase_mechanics(text))]


def authority_phases(thresholds: list[tuple[int, str]], damage_taken: list[int]) -> list[list[object]]:
    """The authority's ``phases`` field: ``[[at_hp, name, damage_taken_bp], ...]`` (tick.lua)."""
    return [[hp, name, damage_taken[i + 1]] for i, (hp, name) in enumerate(thresholds)]


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
