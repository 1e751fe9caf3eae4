"""/rewards: the grant feed (a cursor) and idempotent claims."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Path, Query, Router, Schema
from pydantic import Field

from api import auth, selectors
from api.routers.common import audited, errors
from api.schemas import Claim, Grant, GrantPage
from bosses.models import RewardGrant
from bosses.selectors import boss_get
from bosses.services import reward_claim

router = Router(tags=["rewards"])

GRANTS_DEFAULT = 100
GRANTS_MAX = 1_000
ID_MAX = 2**63 - 1


class GrantFilter(Schema):
    after: int = Field(0, ge=0, le=ID_MAX, description="Only grants with a larger id (the cursor).")
    limit: int = Field(GRANTS_DEFAULT, ge=1, le=GRANTS_MAX)
    boss: str | None = Field(None, max_length=64, description="A boss slug.")
    fight: int | None = Field(None, ge=1, le=2**31 - 1)
    player: str | None = Field(None, min_length=1, max_length=64)


class GrantPath(Schema):
    grant_id: int = Field(ge=1, le=ID_MAX)


def grant_out(grant: RewardGrant) -> dict[str, Any]:
    """The API's view of a reward grant."""
    return {
        "id": grant.pk,
        "boss": grant.boss.slug,
        "fight": grant.fight,
        "player": grant.player,
        "tier": grant.tier,
        "rank": grant.rank,
        "damage": grant.damage,
        "payload": grant.payload,
        "granted_at": grant.granted_at,
        "claimed_at": grant.claimed_at,
        "claim_id": grant.claim_id or None,
    }


@router.get("/rewards", response={200: GrantPage, **errors(404)}, auth=auth.REWARDS, summary="Reward grants")
def rewards_list(request: HttpRequest, filters: Query[GrantFilter]) -> dict[str, Any]:
    """Grants with an id above ``after``, oldest first; call again with ``after=next``."""
    boss = boss_get(slug=filters.boss) if filters.boss else None
    rows = selectors.reward_grants_after(
        after=filters.after, limit=filters.limit, boss=boss, fight=filters.fight, player=filters.player
    )
    return {"items": [grant_out(g) for g in rows], "next": rows[-1].pk if rows else filters.after}


@router.post(
    "/rewards/{grant_id}/claim",
    response={200: Grant, **errors(400, 404, 409)},
    auth=auth.REWARDS,
    summary="Claim a reward grant",
)
def rewards_claim(request: HttpRequest, path: Path[GrantPath], payload: Claim) -> dict[str, Any]:
    """The first claim wins; a retry with its ``claim_id`` gets the same answer, another
    ``claim_id`` 409 ``already_claimed``."""
    # audited, retries and refusals included: the trail shows every attempt on a grant
    grant, _first = audited(
        request,
        action="reward.claim",
        target=f"reward/{path.grant_id}",
        work=lambda: reward_claim(grant_id=path.grant_id, claim_id=payload.claim_id),
        detail={"claim_id": payload.claim_id},
    )
    return grant_out(grant)
