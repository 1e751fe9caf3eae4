"""Input validation shared by services, consumers, forms and commands.

Every check raises a typed :mod:`core.errors` error before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from core.errors import InvalidAmount, InvalidInput
from core.limits import MAX_BREAKDOWN_ENTRIES, MAX_DELTA_AMOUNT, MAX_PLAYER_ID_LENGTH, MAX_SEQ

PLAYER_ID_RE = re.compile(rf"^[A-Za-z0-9_.:@-]{{1,{MAX_PLAYER_ID_LENGTH}}}$")


def _describe(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(
    value: Any, *, field: str, minimum: int, maximum: int, error: type[InvalidInput] = InvalidInput
) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(
            f"{field} must be a whole number, got {_describe(value)} ({type(value).__name__})", field=field
        )
    if value < minimum or value > maximum:
        raise error(f"{field} must be between {minimum} and {maximum:,}, got {value}", field=field)
    return int(value)


def damage_amount(value: Any, *, field: str = "amount") -> int:
    """A delta amount: a whole number from 1 to ``MAX_DELTA_AMOUNT``."""
    return whole_number(value, field=field, minimum=1, maximum=MAX_DELTA_AMOUNT, error=InvalidAmount)


def seq_number(value: Any) -> int:
    """A delta's sequence number: 1, 2, 3, ... per (shard, epoch)."""
    return whole_number(value, field="seq", minimum=1, maximum=MAX_SEQ)


def epoch_number(value: Any) -> int:
    """A session epoch handed out by the platform (1 or more)."""
    return whole_number(value, field="epoch", minimum=1, maximum=MAX_SEQ)


def breakdown_map(value: Any, *, amount: int) -> dict[str, int]:
    """A per-player breakdown ``{player_id: damage}`` whose sum does not exceed ``amount``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"breakdown must be an object of player -> damage, got {_describe(value)}", field="breakdown"
        )
    if len(value) > MAX_BREAKDOWN_ENTRIES:
        raise InvalidInput(
            f"breakdown has {len(value)} players; at most {MAX_BREAKDOWN_ENTRIES}", field="breakdown"
        )
    out: dict[str, int] = {}
    for player, dmg in value.items():
        if not isinstance(player, str) or not PLAYER_ID_RE.match(player):
            raise InvalidInput(
                f"breakdown player id {_describe(player)} is not 1-{MAX_PLAYER_ID_LENGTH} "
                "characters of letters, digits and _.:@-",
                field="breakdown",
            )
        out[player] = damage_amount(dmg, field=f"breakdown[{player}]")
    if sum(out.values()) > amount:
        raise InvalidAmount(
            f"breakdown sums to {sum(out.values())}, more than the amount {amount}", field="breakdown"
        )
    return out


def held_breakdown_map(value: Any, *, held: int) -> dict[str, int]:
    """A heartbeat's per-player breakdown of what it holds: ``{player_id: damage}``.

    Optional (``None`` -> ``{}``); at most ``MAX_BREAKDOWN_ENTRIES`` players with valid ids,
    each a whole number from 1 to ``MAX_DELTA_AMOUNT`` (``== MAX_HELD_AMOUNT``), summing to at most ``held`` (pending
    plus the in-flight amount as reported; the rest of held stays unattributed).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"heartbeat breakdown must be an object of player -> damage, got {_describe(value)}",
            field="breakdown",
        )
    if len(value) > MAX_BREAKDOWN_ENTRIES:
        raise InvalidInput(
            f"heartbeat breakdown has {len(value)} players; at most {MAX_BREAKDOWN_ENTRIES}",
            field="breakdown",
        )
    out: dict[str, int] = {}
    for player, dmg in value.items():
        if not isinstance(player, str) or not PLAYER_ID_RE.match(player):
            raise InvalidInput(
                f"heartbeat breakdown player id {_describe(player)} is not 1-{MAX_PLAYER_ID_LENGTH} "
                "characters of letters, digits and _.:@-",
                field="breakdown",
            )
        out[player] = whole_number(
            dmg, field=f"breakdown[{player}]", minimum=1, maximum=MAX_DELTA_AMOUNT, error=InvalidAmount
        )
    total = sum(out.values())
    if total > held:
        raise InvalidAmount(
            f"heartbeat breakdown sums to {total}, more than the {held} held (pending + in flight)",
            field="breakdown",
        )
    return out
