"""Numeric bounds shared by validation, the admin and the Lua scripts.

Lua numbers are IEEE doubles: whole numbers are exact below 2^53. Keeping one delta under
2^40 and max HP under 2^50 leaves room for thousands of maximal deltas in one tick before
a sum could lose precision, while 10^9+ HP bosses and any realistic shard tick fit easily.
"""
MAX_HP = 2**50
MAX_DELTA_AMOUNT = 2**40
MAX_DAMAGE_PER_ATTACK = 10**9
MAX_SEQ = 2**53 - 1
MAX_BREAKDOWN_ENTRIES = 1_000
MAX_PLAYER_ID_LENGTH = 64
