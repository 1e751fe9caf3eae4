"""Numeric bounds shared by validation, the admin and the Lua scripts.

The bounds a delta must fit are part of the protocol (``worldboss_sdk.protocol``).

Lua numbers are IEEE doubles: whole numbers are exact below 2^53. Keeping one delta under
2^40 and max HP under 2^50 leaves room for thousands of maximal deltas in one tick before
a sum could lose precision, while 10^9+ HP bosses and any realistic shard tick fit easily.
"""

from worldboss_sdk.protocol import MAX_BREAKDOWN_ENTRIES, MAX_DELTA_AMOUNT, MAX_PLAYER_ID_LENGTH, MAX_SEQ

__all__ = [
    "MAX_BREAKDOWN_ENTRIES",
    "MAX_DAMAGE_PER_ATTACK",
    "MAX_DELTA_AMOUNT",
    "MAX_HELD_AMOUNT",
    "MAX_HP",
    "MAX_PLAYER_ID_LENGTH",
    "MAX_SEQ",
]

MAX_HP = 2**50
MAX_DAMAGE_PER_ATTACK = 10**9
# What a heartbeat may report as held (pending, or in flight), and what heartbeat.lua keeps as
# one session's held damage: one delta's worth. A fair crash settlement is applied like a
# delta, so it may not exceed one; and 2^40 per session keeps every sum exact below 2^53.
MAX_HELD_AMOUNT = MAX_DELTA_AMOUNT

# A damage-taken multiplier in basis points (10,000 = 100 %: every point of damage counts;
# docs/liveops.md, "Mechanics"). The opening phase, and a phase with no "takes N%", take it.
FULL_DAMAGE_BP = 10_000
