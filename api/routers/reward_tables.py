"""/reward-tables: what a won fight grants (docs/rewards.md), written whole: a table's fields
and its ordered tiers replaced at once, checked as the admin checks them. Every write is a
bosses service, audited with the key as actor."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from api import auth
from api.routers.common import Paging, audited, errors
from api.schemas import RewardTableFull, RewardTableIn, RewardTablePage
from bosses.models import RewardTable
from bosses.reward_services import reward_table_delete, reward_table_save
from core.errors import NotFound

router = Router(tags=["reward tables"])


def table_out(table: RewardTable) -> dict[str, Any]:
    """The API's view of a table with its tiers in order."""
    out = {f: getattr(table, f) for f in RewardTableFull.model_fields if f != "tiers"}
    out["tiers"] = [
        {
            "position": t.position,
            "name": t.name,
            "kind": t.kind,
            "payload": t.payload,
            "rank_from": t.rank_from,
            "rank_to": t.rank_to,
            "percent": None if t.percent is None else float(t.percent),
            "damage_min": t.damage_min,
        }
        for t in table.tiers.order_by("position", "id")
    ]
    return out


def _table(name: str) -> RewardTable:
    table = RewardTable.objects.filter(name=name).first()
    if table is None:
        raise NotFound(f"no reward table {name!r}")
    return table


def _write(payload: RewardTableIn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fields = payload.model_dump(exclude={"tiers"})
    return fields, [t.model_dump() for t in payload.tiers]


@router.get(
    "/reward-tables",
    response={200: RewardTablePage, **errors()},
    auth=auth.READ,
    summary="List reward tables",
)
def reward_tables_list(request: HttpRequest, paging: Query[Paging]) -> dict[str, Any]:
    """Every table by name, one page at a time."""
    rows = RewardTable.objects.order_by("name")
    return {
        "count": rows.count(),
        "offset": paging.offset,
        "limit": paging.limit,
        "items": [table_out(t) for t in rows[paging.offset : paging.offset + paging.limit]],
    }


@router.get(
    "/reward-tables/{name}",
    response={200: RewardTableFull, **errors(404)},
    auth=auth.READ,
    summary="Read a reward table",
)
def reward_tables_read(request: HttpRequest, name: str) -> dict[str, Any]:
    """One table and its tiers."""
    return table_out(_table(name))


@router.post(
    "/reward-tables",
    response={201: RewardTableFull, **errors(400)},
    auth=auth.OPERATE,
    summary="Create a reward table",
)
def reward_tables_create(request: HttpRequest, payload: RewardTableIn) -> tuple[int, dict[str, Any]]:
    """A new table with its tiers (refused whole when any check fails)."""
    fields, tiers = _write(payload)
    table = audited(
        request,
        action="reward_table.create",
        target=f"reward_table/{payload.name}",
        work=lambda: reward_table_save(table=None, fields=fields, tiers=tiers),
        detail={"tiers": len(tiers)},
    )
    return 201, table_out(table)


@router.put(
    "/reward-tables/{name}",
    response={200: RewardTableFull, **errors(400, 404)},
    auth=auth.OPERATE,
    summary="Replace a reward table",
)
def reward_tables_replace(request: HttpRequest, name: str, payload: RewardTableIn) -> dict[str, Any]:
    """The table's fields and all its tiers replaced at once; fights already won keep the
    grants they made (and their frozen table record)."""
    fields, tiers = _write(payload)
    table = audited(
        request,
        action="reward_table.replace",
        target=f"reward_table/{name}",
        work=lambda: reward_table_save(table=_table(name), fields=fields, tiers=tiers),
        detail={"tiers": len(tiers)},
    )
    return table_out(table)


@router.delete(
    "/reward-tables/{name}",
    response={204: None, **errors(400, 404)},
    auth=auth.OPERATE,
    summary="Delete a reward table",
)
def reward_tables_delete(request: HttpRequest, name: str) -> tuple[int, None]:
    """Delete a table that no template and no boss uses."""
    audited(
        request,
        action="reward_table.delete",
        target=f"reward_table/{name}",
        work=lambda: reward_table_delete(table=_table(name)),
    )
    return 204, None
