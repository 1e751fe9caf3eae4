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
from worldboss_sdk.protocol import PLAYER_ID_PATTERN, RESERVED_PLAYER_PREFIXES, SHARD_KEY_PATTERN

# The one rule for ids (worldboss_sdk.protocol): anchored with \A and \Z, so no newline or
# other control character passes; every check below goes through these two.
PLAYER_ID_RE = re.compile(PLAYER_ID_PATTERN)
SHARD_KEY_RE = re.compile(SHARD_KEY_PATTERN)
PLAYER_ID_RULE = f"1-{MAX_PLAYER_ID_LENGTH} characters of letters, digits and _.:@-"


def player_id_problem(value: Any, *, platform_ids: bool = False) -> str | None:
    """What is wrong with ``value`` as a player id, or None when it is one.

    ``platform_ids``: the ids the platform hands out itself (``user:``, ``guest:``, ``sim:``)
    are allowed; only the platform's own hosted shards pass True. A game server's breakdown,
    a ticket and a simulated player may not name one (docs/security.md, "Player identity").
    """
    if not isinstance(value, str) or PLAYER_ID_RE.fullmatch(value) is None:
        return f"player id {_describe(value)} is not {PLAYER_ID_RULE}"
    if not platform_ids and value.startswith(RESERVED_PLAYER_PREFIXES):
        prefixes = ", ".join(RESERVED_PLAYER_PREFIXES)
        return f"player id {_describe(value)} is a platform id ({prefixes}...): the platform hands those out"
    return None


def player_id(
    value: Any, *, field: str = "player", platform_ids: bool = False, error: type[InvalidInput] = InvalidInput
) -> str:
    """``value`` if it is a player id (:func:`player_id_problem`), else ``error``."""
    problem = player_id_problem(value, platform_ids=platform_ids)
    if problem is not None:
        raise error(problem, field=field)
    return str(value)


def is_shard_key(value: Any) -> bool:
    """A shard key: lowercase letters, digits, '-' and '_', at most 64, matched whole."""
    return isinstance(value, str) and SHARD_KEY_RE.fullmatch(value) is not None


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


def breakdown_map(value: Any, *, amount: int, platform_ids: bool = False) -> dict[str, int]:
    """A per-player breakdown ``{player_id: damage}`` whose sum does not exceed ``amount``.

    ``platform_ids``: see :func:`player_id_problem` (True for the platform's hosted shards only).
    """
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
        problem = player_id_problem(player, platform_ids=platform_ids)
        if problem is not None:
            raise InvalidInput(f"breakdown {problem}", field="breakdown")
        out[player] = damage_amount(dmg, field=f"breakdown[{player}]")
    if sum(out.values()) > amount:
        raise InvalidAmount(
            f"breakdown sums to {sum(out.values())}, more than the amount {amount}", field="breakdown"
        )
    return out


def held_breakdown_map(
    value: Any, *, held: int, platform_ids: bool = False, field: str = "breakdown"
) -> dict[str, int]:
    """A heartbeat's per-player breakdown of what it holds: ``{player_id: damage}``.

    Optional (``None`` -> ``{}``); at most ``MAX_BREAKDOWN_ENTRIES`` players with valid ids,
    each a whole number from 1 to ``MAX_DELTA_AMOUNT`` (``== MAX_HELD_AMOUNT``), summing to at most ``held`` (what
    the breakdown covers: ``pending``, the in-flight amount, or both for a merged one; the rest
    stays unattributed). ``field`` names it in errors (``breakdown``, ``inflight.breakdown``).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"heartbeat {field} must be an object of player -> damage, got {_describe(value)}",
            field=field,
        )
    if len(value) > MAX_BREAKDOWN_ENTRIES:
        raise InvalidInput(
            f"heartbeat {field} has {len(value)} players; at most {MAX_BREAKDOWN_ENTRIES}",
            field=field,
        )
    out: dict[str, int] = {}
    for player, dmg in value.items():
        problem = player_id_problem(player, platform_ids=platform_ids)
        if problem is not None:
            raise InvalidInput(f"heartbeat {field} {problem}", field=field)
        out[player] = whole_number(
            dmg, field=f"{field}[{player}]", minimum=1, maximum=MAX_DELTA_AMOUNT, error=InvalidAmount
        )
    total = sum(out.values())
    if total > held:
        raise InvalidAmount(
            f"heartbeat {field} sums to {total}, more than the {held} it covers",
            field=field,
        )
    return out
