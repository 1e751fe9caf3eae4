"""/bosses/<slug>/fights/<n>/: results, leaderboard, a player's standing, the timeline."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Path, Query, Router, Schema
from pydantic import Field

from api import auth, selectors
from api.routers.common import Paging, errors
from api.routers.rewards import grant_out
from api.schemas import Leaderboard, PlayerResult, Results, Timeline
from bosses.selectors import boss_get

router = Router(tags=["fights"])

PLAYER_MAX_CHARS = 64


class FightPath(Schema):
    slug: str
    fight: int = Field(ge=1, le=2**31 - 1)


class PlayerPath(FightPath):
    player: str = Field(min_length=1, max_length=PLAYER_MAX_CHARS)


@router.get(
    "/bosses/{slug}/fights/{fight}/results",
    response={200: Results, **errors(404, 503)},
    auth=auth.READ,
    summary="A fight's results",
)
def fight_results(request: HttpRequest, path: Path[FightPath]) -> dict[str, Any]:
    """Status, HP and version (final once the fight is over), defeat time and damage totals."""
    return selectors.fight_results(boss=boss_get(slug=path.slug), fight=path.fight)


@router.get(
    "/bosses/{slug}/fights/{fight}/leaderboard",
    response={200: Leaderboard, **errors(404, 503)},
    auth=auth.READ,
    summary="A fight's leaderboard",
)
def fight_leaderboard(request: HttpRequest, path: Path[FightPath], paging: Query[Paging]) -> dict[str, Any]:
    """Players by rank, one page at a time: live from the authority while the fight runs,
    the settled ranking once the victory saga wrote it."""
    board = selectors.fight_leaderboard(
        boss=boss_get(slug=path.slug), fight=path.fight, offset=paging.offset, limit=paging.limit
    )
    return {**board, "offset": paging.offset, "limit": paging.limit}


@router.get(
    "/bosses/{slug}/fights/{fight}/players/{player}",
    response={200: PlayerResult, **errors(404, 503)},
    auth=auth.READ,
    summary="A player's contribution and rank",
)
def fight_player(request: HttpRequest, path: Path[PlayerPath]) -> dict[str, Any]:
    """One player's damage and rank in the fight, and every grant once the rewards are out."""
    out = selectors.fight_player(boss=boss_get(slug=path.slug), fight=path.fight, player=path.player)
    out["rewards"] = [grant_out(g) for g in out["rewards"]]
    out["reward"] = out["rewards"][0] if out["rewards"] else None
    return out


@router.get(
    "/bosses/{slug}/fights/{fight}/timeline",
    response={200: Timeline, **errors(404)},
    auth=auth.READ,
    summary="A fight's timeline",
)
def fight_timeline(request: HttpRequest, path: Path[FightPath], paging: Query[Paging]) -> dict[str, Any]:
    """Status changes, phase changes and crash/restore sagas, oldest first (from the SQL archive)."""
    timeline = selectors.fight_timeline(
        boss=boss_get(slug=path.slug), fight=path.fight, offset=paging.offset, limit=paging.limit
    )
    return {**timeline, "offset": paging.offset, "limit": paging.limit}
