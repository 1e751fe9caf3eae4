"""Reads of the backend API: fight results, leaderboards, timelines and the reward feed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from bosses.fight_configs import FightSetup, fight_config_get
from bosses.models import (
    BossEncounter,
    BossEvent,
    BossStatus,
    Contribution,
    ContributionKind,
    RewardGrant,
    SagaKind,
    SagaRun,
    session_end_kind,
)
from bosses.sagas.victory import victory_saga_key
from bosses.selectors import boss_live_players
from core import keys
from core.errors import NotFound
from core.redis import get_redis

# The running fight's leaderboard is ranked from the live per-player hash in Redis. One
# ranking is kept this long per process, so a flood of leaderboard calls costs one HSCAN a
# second per boss, and at most this many players are read (the rest is reported as
# truncated: a fight that big is ranked exactly once it is over, from Contribution).
LIVE_RANKING_TTL_S = 1.0
LIVE_RANKING_MAX_PLAYERS = 100_000
# The authority's fields a running fight's results show.
LIVE_RESULT_FIELDS = ("fight", "status", "hp", "max_hp", "version", "accepted", "applied", "overkill")

_rankings: dict[tuple[int, int, str], tuple[float, LiveRanking]] = {}
_rankings_lock = threading.Lock()


@dataclass(frozen=True)
class LiveRanking:
    """The running fight's players, most damage first (ties by name), from Redis."""

    rows: list[tuple[str, int]]
    truncated: bool

    def rank_of(self, player: str) -> tuple[int, int] | None:
        """``(rank, damage)`` of ``player`` or None."""
        for i, (name, damage) in enumerate(self.rows):
            if name == player:
                return i + 1, damage
        return None


def fight_check(*, boss: BossEncounter, fight: int) -> None:
    """:class:`NotFound` unless ``fight`` is one of the boss's fights so far (1..current)."""
    if not 1 <= fight <= boss.fight:
        raise NotFound(f"{boss.slug} has no fight {fight} (its fights so far: 1 to {boss.fight})")


def fight_is_running(*, boss: BossEncounter, fight: int) -> bool:
    """True while ``fight`` is the current one and its ranking is not in SQL yet."""
    if fight != boss.fight or boss.status == BossStatus.DRAFT:
        return False
    return not Contribution.objects.filter(boss=boss, fight=fight, kind=ContributionKind.PLAYER).exists()


def _live_fields(boss: BossEncounter) -> dict[str, str]:
    k = keys.BossKeys(boss.pk)
    values = get_redis().hmget(k.state, [*LIVE_RESULT_FIELDS, "incarnation"])
    return {
        f: v.decode() if isinstance(v, bytes) else v
        for f, v in zip([*LIVE_RESULT_FIELDS, "incarnation"], values)
        if v is not None
    }


def live_ranking(*, boss: BossEncounter) -> LiveRanking:
    """The running fight's ranking from the ``players`` hash (cached LIVE_RANKING_TTL_S per process,
    at most LIVE_RANKING_MAX_PLAYERS read)."""
    live = _live_fields(boss)
    cache_key = (boss.pk, boss.fight, live.get("incarnation", ""))
    now = time.monotonic()
    with _rankings_lock:
        hit = _rankings.get(cache_key)
        if hit is not None and now - hit[0] < LIVE_RANKING_TTL_S:
            return hit[1]
    if live.get("fight") and int(live["fight"]) != boss.fight:
        ranking = LiveRanking(rows=[], truncated=False)
    else:
        damage: dict[str, int] = {}
        truncated = False
        for batch in boss_live_players(boss_id=boss.pk, batch=1_000):
            for name, value in batch:
                if len(damage) >= LIVE_RANKING_MAX_PLAYERS:
                    truncated = True
                    break
                damage[name] = value
            if truncated:
                break
        rows = sorted(((n, d) for n, d in damage.items() if d > 0), key=lambda x: (-x[1], x[0]))
        ranking = LiveRanking(rows=rows, truncated=truncated)
    with _rankings_lock:
        for key in [k for k, (at, _) in _rankings.items() if now - at >= LIVE_RANKING_TTL_S]:
            del _rankings[key]
        _rankings[cache_key] = (now, ranking)
    return ranking


def fight_results(*, boss: BossEncounter, fight: int) -> dict[str, Any]:
    """Status, final HP and version, defeat time and damage totals of one fight."""
    fight_check(boss=boss, fight=fight)
    saga = SagaRun.objects.filter(key=victory_saga_key(boss_id=boss.pk, fight=fight)).first()
    final = (saga.detail or {}).get("final") if saga else None
    players = Contribution.objects.filter(boss=boss, fight=fight, kind=ContributionKind.PLAYER).aggregate(
        n=Count("id"), total=Sum("damage")
    )
    last = BossEvent.objects.filter(boss=boss, fight=fight).order_by("-version").first()
    setup = fight_config_get(boss=boss, fight=fight)
    out: dict[str, Any] = {
        "boss": boss.slug,
        "fight": fight,
        "max_hp": setup.max_hp,
        "config": fight_config_out(setup=setup),
        "status": None,
        "hp": None,
        "version": None,
        "defeated_at": None,
        "final": fight != boss.fight or boss.status in (BossStatus.DEFEATED, BossStatus.EXPIRED),
        "totals": {
            "applied": None,
            "overkill": None,
            "accepted": None,
            "players": players["n"] or 0,
            "player_damage": players["total"] or 0,
        },
        "victory": None,
    }
    if saga is not None:
        out["victory"] = {"status": saga.status, "finished_at": saga.finished_at}
    if fight == boss.fight:
        live = _live_fields(boss) if boss.status != BossStatus.DRAFT else {}
        if live and int(live.get("fight", 0)) == fight:
            out["status"] = live.get("status")
            out["hp"] = int(live["hp"])
            out["version"] = int(live["version"])
            for f in ("applied", "overkill", "accepted"):
                out["totals"][f] = int(live.get(f, 0))
        else:
            out["status"] = boss.status
        if boss.final_hp is not None:
            out["hp"], out["version"] = boss.final_hp, boss.final_version
        out["defeated_at"] = boss.defeated_at
    if final:
        out["status"] = BossStatus.DEFEATED
        out["hp"], out["version"] = final["hp"], final["version"]
        for f in ("applied", "overkill", "accepted"):
            out["totals"][f] = final.get(f)
        if final.get("defeated_ms"):
            out["defeated_at"] = datetime.fromtimestamp(final["defeated_ms"] / 1000, tz=UTC)
    if out["hp"] is None and last is not None:  # a past fight without a victory: its archive
        out["status"] = out["status"] or last.status
        out["hp"], out["version"] = last.hp, last.version
    if fight != boss.fight and not final and last is not None:
        out["status"] = last.status
    return out


def fight_config_out(*, setup: FightSetup) -> dict[str, Any]:
    """A fight's configuration as the API shows it: frozen at go-live, or (``frozen`` false)
    the boss's current settings for a fight that has not gone live."""
    return {**setup.config, "fight": setup.fight, "frozen": setup.frozen, "frozen_at": setup.frozen_at}


def fight_leaderboard(*, boss: BossEncounter, fight: int, offset: int, limit: int) -> dict[str, Any]:
    """One page of the fight's players by rank: from Contribution once the fight is settled,
    from the live ranking while it runs."""
    fight_check(boss=boss, fight=fight)
    if fight_is_running(boss=boss, fight=fight):
        ranking = live_ranking(boss=boss)
        page = ranking.rows[offset : offset + limit]
        return {
            "source": "live",
            "count": len(ranking.rows),
            "truncated": ranking.truncated,
            "items": [
                {"rank": offset + i + 1, "player": name, "damage": dmg} for i, (name, dmg) in enumerate(page)
            ],
        }
    rows = Contribution.objects.filter(boss=boss, fight=fight, kind=ContributionKind.PLAYER).order_by("rank")
    return {
        "source": "final",
        "count": rows.count(),
        "truncated": False,
        "items": [
            {"rank": c.rank, "player": c.name, "damage": c.damage} for c in rows[offset : offset + limit]
        ],
    }


def fight_player(*, boss: BossEncounter, fight: int, player: str) -> dict[str, Any]:
    """One player's damage and rank in the fight (and reward, once granted)."""
    fight_check(boss=boss, fight=fight)
    if fight_is_running(boss=boss, fight=fight):
        found = live_ranking(boss=boss).rank_of(player)
        if found is None:
            raise NotFound(f"{player!r} has no damage in {boss.slug} fight {fight}")
        rank, damage = found
        return {
            "player": player,
            "rank": rank,
            "damage": damage,
            "source": "live",
            "rewards": [],
            "reward": None,
        }
    row = Contribution.objects.filter(
        boss=boss, fight=fight, kind=ContributionKind.PLAYER, name=player
    ).first()
    if row is None:
        raise NotFound(f"{player!r} has no damage in {boss.slug} fight {fight}")
    grants = list(
        RewardGrant.objects.select_related("boss")
        .filter(boss=boss, fight=fight, player=player)
        .order_by("pk")
    )
    return {
        "player": player,
        "rank": row.rank,
        "damage": row.damage,
        "source": "final",
        "rewards": grants,
        "reward": grants[0] if grants else None,
    }


def fight_timeline(*, boss: BossEncounter, fight: int, offset: int, limit: int) -> dict[str, Any]:
    """Status changes, phase changes and crash/restore sagas of the fight, oldest first.

    Phase changes are the first archived tick at or below each threshold of the fight's
    frozen phases (one indexed query per phase); only what the SQL archive holds is shown.
    """
    fight_check(boss=boss, fight=fight)
    items: list[dict[str, Any]] = []
    events = BossEvent.objects.filter(boss=boss, fight=fight)
    # a status change is logged as its own entry, except the defeat: the killing tick carries it
    changes = events.filter(~Q(kind="tick") | Q(status=BossStatus.DEFEATED))
    for e in changes.order_by("version"):
        items.append(
            {"kind": "status", "ts_ms": e.ts_ms, "version": e.version, "status": e.status, "hp": e.hp}
        )
    for threshold, name in fight_config_get(boss=boss, fight=fight).thresholds:
        e = events.filter(hp__lte=threshold).order_by("version").first()
        if e is not None:
            items.append({"kind": "phase", "ts_ms": e.ts_ms, "version": e.version, "phase": name, "hp": e.hp})
    sagas: QuerySet[SagaRun] = SagaRun.objects.filter(
        boss=boss, fight=fight, kind__in=[SagaKind.CRASH, SagaKind.RESTORE]
    )
    for s in sagas:
        items.append(
            {
                "kind": session_end_kind(s.detail.get("reason")) if s.kind == SagaKind.CRASH else s.kind,
                "ts_ms": int(s.started_at.timestamp() * 1000),
                "version": None,
                "status": s.status,
                "shard": s.shard_key or None,
                "policy": s.policy or None,
                "amount": s.amount,
            }
        )
    # one tick can cross phases and kill the boss: the HP crossed the phases on its way to 0
    order = {"phase": 0, "status": 1}
    items.sort(key=lambda i: (i["ts_ms"], i["version"] or 0, order.get(i["kind"], 2)))
    return {"count": len(items), "items": items[offset : offset + limit]}


def reward_grants_after(
    *,
    after: int,
    limit: int,
    boss: BossEncounter | None = None,
    fight: int | None = None,
    player: str | None = None,
) -> list[RewardGrant]:
    """Grants with an id above ``after``, oldest first (the game's cursor), filtered."""
    rows = RewardGrant.objects.select_related("boss").filter(pk__gt=after)
    if boss is not None:
        rows = rows.filter(boss=boss)
    if fight is not None:
        rows = rows.filter(fight=fight)
    if player is not None:
        rows = rows.filter(player=player)
    return list(rows.order_by("pk")[:limit])


def reward_grant_get(*, grant_id: int) -> RewardGrant:
    """The grant or :class:`NotFound`."""
    grant = RewardGrant.objects.select_related("boss").filter(pk=grant_id).first()
    if grant is None:
        raise NotFound(f"no reward grant {grant_id}")
    return grant
