"""/shards: a backend registers its game servers' shards, rotates their tokens and retires
them (docs/api.md). Every write is a shards service (or the retirement saga), audited with
the key as actor; a token is in the answer once and never in the audit trail."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from api import auth
from api.routers.common import Paging, audited, errors
from api.schemas import ShardCreate, ShardOut, ShardPage, ShardRetired, ShardWithToken
from bosses.sagas.crash import shard_retire
from core.errors import NotFound
from shards.models import Shard
from shards.services import shard_create, shard_token_rotate

router = Router(tags=["shards"])


def shard_out(shard: Shard) -> dict[str, Any]:
    """The API's view of a shard (never its token hash)."""
    return {f: getattr(shard, f) for f in ShardOut.model_fields}


def _shard(key: str) -> Shard:
    shard = Shard.objects.filter(key=key).first()
    if shard is None:
        raise NotFound(f"no shard {key!r}")
    return shard


@router.get("/shards", response={200: ShardPage, **errors()}, auth=auth.READ, summary="List shards")
def shards_list(request: HttpRequest, paging: Query[Paging]) -> dict[str, Any]:
    """Every shard by key, one page at a time."""
    rows = Shard.objects.order_by("key")
    return {
        "count": rows.count(),
        "offset": paging.offset,
        "limit": paging.limit,
        "items": [shard_out(s) for s in rows[paging.offset : paging.offset + paging.limit]],
    }


@router.get("/shards/{key}", response={200: ShardOut, **errors(404)}, auth=auth.READ, summary="Read a shard")
def shards_read(request: HttpRequest, key: str) -> dict[str, Any]:
    """One shard: kind, status, current epoch, when its token was last rotated."""
    return shard_out(_shard(key))


@router.post(
    "/shards", response={201: ShardWithToken, **errors(400)}, auth=auth.OPERATE, summary="Create a shard"
)
def shards_create(request: HttpRequest, payload: ShardCreate) -> tuple[int, dict[str, Any]]:
    """A new shard and its token (shown once)."""
    shard, token = audited(
        request,
        action="shard.create",
        target=f"shard/{payload.key}",
        work=lambda: shard_create(
            key=payload.key, name=payload.name, region=payload.region, kind=payload.kind
        ),
        detail={"kind": payload.kind},
    )
    return 201, {"shard": shard_out(shard), "token": token}


@router.post(
    "/shards/{key}/token",
    response={200: ShardWithToken, **errors(404)},
    auth=auth.OPERATE,
    summary="Rotate a shard's token",
)
def shards_token_rotate(request: HttpRequest, key: str) -> dict[str, Any]:
    """A new token for the shard; the old one stops working at once (open sessions go on)."""
    shard = _shard(key)
    token = audited(
        request,
        action="shard.token_rotate",
        target=f"shard/{key}",
        work=lambda: shard_token_rotate(shard=shard),
    )
    shard.refresh_from_db()
    return {"shard": shard_out(shard), "token": token}


@router.post(
    "/shards/{key}/retire",
    response={200: ShardRetired, **errors(404)},
    auth=auth.OPERATE,
    summary="Retire a shard",
)
def shards_retire(request: HttpRequest, key: str) -> dict[str, Any]:
    """Refuse new sessions and fence every session it has on every boss (its held damage is
    settled under each boss's crash policy: docs/sagas.md)."""
    shard = _shard(key)
    fenced = audited(
        request, action="shard.retire", target=f"shard/{key}", work=lambda: shard_retire(shard=shard)
    )
    shard.refresh_from_db()
    return {"shard": shard_out(shard), "sessions_fenced": fenced}
