"""Reward tables written whole (the API): a table's fields and its ordered tiers replaced in
one transaction, after the same checks the admin applies (``core.rewards.table_problems``),
so a table is never half-written nor unusable (docs/rewards.md)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from bosses.models import RewardTable, RewardTier
from core import rewards
from core.errors import InvalidInput

TABLE_FIELDS = ("name", "description", "min_damage", "last_hit_payload")
TIER_FIELDS = ("name", "kind", "payload", "rank_from", "rank_to", "percent", "damage_min")


def _pure_tier(tier: dict[str, Any]) -> rewards.Tier:
    percent = tier.get("percent")
    return rewards.Tier(
        name=tier.get("name") or "",
        kind=tier.get("kind") or "",
        payload=tier.get("payload") if tier.get("payload") is not None else {},
        rank_from=tier.get("rank_from"),
        rank_to=tier.get("rank_to"),
        percent=None if percent is None else Fraction(str(percent)),
        damage_min=tier.get("damage_min"),
    )


def reward_table_save(
    *, table: RewardTable | None, fields: dict[str, Any], tiers: list[dict[str, Any]]
) -> RewardTable:
    """Create (``table`` None) or replace a table: its fields and all its tiers, in order.

    Raises :class:`core.rewards.RewardTableInvalid` (every problem) or InvalidInput (the
    model's own validation: a name taken, a field out of range)."""
    unknown = sorted(set(fields) - set(TABLE_FIELDS)) + sorted(
        {k for t in tiers for k in t} - set(TIER_FIELDS)
    )
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    rewards.table_validate(
        rewards.Table(
            tiers=tuple(_pure_tier(t) for t in tiers),
            min_damage=fields.get("min_damage", table.min_damage if table else 1),
            last_hit_payload=fields.get("last_hit_payload", table.last_hit_payload if table else None),
        )
    )
    table = table or RewardTable()
    for name, value in fields.items():
        setattr(table, name, value)
    rows = [RewardTier(position=i, **t) for i, t in enumerate(tiers)]
    try:
        table.full_clean()
        for row in rows:
            row.full_clean(exclude=["table"])
    except ValidationError as exc:
        errors = getattr(exc, "error_dict", None) or {"__all__": exc.error_list}
        field, problems = next(iter(errors.items()))
        text = " ".join(m for e in problems for m in e.messages)
        raise InvalidInput(f"{field}: {text}" if field != "__all__" else text, field=field) from None
    with transaction.atomic():
        table.save()
        RewardTier.objects.filter(table=table).delete()
        for row in rows:
            row.table = table
        RewardTier.objects.bulk_create(rows)
    return table


def reward_table_delete(*, table: RewardTable) -> None:
    """Delete a table no template and no boss uses."""
    try:
        table.delete()
    except ProtectedError:
        raise InvalidInput(
            f"reward table {table.name!r} is used by a template or a boss; change them first"
        ) from None
