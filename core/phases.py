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

# The phase a fight opens in, above the first threshold (index 0). Seeded into the
# authority (its ``opening`` field), so tick.lua names it too.
OPENING_PHASE_NAME = "Opening"
PHASE_NAME_RE = re.compile(r"^[^:,]{1,40}$")


def parse_phases(text: str) -> list[tuple[float, str]]:
    """Parse ``"75:Enraged, 50:Frenzy"`` into ``[(75.0, "Enraged"), (50.0, "Frenzy")]``.

    Percentages must be strictly decreasing inside (0, 100); names 1-40 characters.
    """
    phases: list[tuple[float, str]] = []
    text = (text or "").strip()
    if not text:
        return phases
    for raw in text.split(","):
        pct_text, sep, name = raw.strip().partition(":")
        name = name.strip()
        if not sep or not PHASE_NAME_RE.match(name):
            raise InvalidInput(
                f'phase "{raw.strip()}" must look like "75:Enraged" (name 1-40 characters)', field="phases"
            )
        try:
            pct = float(pct_text)
        except ValueError:
            raise InvalidInput(
                f'phase "{raw.strip()}": "{pct_text.strip()}" is not a percentage', field="phases"
            ) from None
        if not (0 < pct < 100) or math.isnan(pct):
            raise InvalidInput(f'phase "{raw.strip()}": percentage must be inside (0, 100)', field="phases")
        if phases and pct >= phases[-1][0]:
            raise InvalidInput(
                f"phase percentages must be strictly decreasing: {pct:g} after {phases[-1][0]:g}",
                field="phases",
            )
        phases.append((pct, name))
    return phases


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
