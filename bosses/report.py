"""The fight report: how one fight went, read from the SQL archive (docs/report.md).

Reads only: ``BossEvent`` (the archived event log), ``SagaRun`` (crash, restore and victory
sagas), ``Contribution`` and ``RewardGrant``. Memory and output stay bounded however long the
fight was: the event log is streamed once (``values_list(...).iterator()``) into fixed-size
time buckets, so a one-hour fight at 10 ticks/s (36,000 events) gives the same few hundred
HP points and at most ``SHARD_BUCKETS_MAX`` damage buckets as a one-minute fight.
"""

from __future__ import annotations

import heapq
import math
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Max, Min, Sum

from bosses.models import (
    BossEncounter,
    BossEvent,
    BossStatus,
    Contribution,
    ContributionKind,
    RewardGrant,
    SagaKind,
    SagaRun,
)
from core import keys
from core.errors import InvalidInput, UnknownBoss
from core.validation import parse_phases, phase_thresholds

# HP chart: time buckets, each keeping its first, last, lowest and highest point (HP only
# falls, so most buckets keep two); with the marks this stays within HP_POINTS_MAX points.
HP_BUCKETS = 225
MARKS_MAX = 50  # per kind (phase changes, status changes): both are few in a real fight
HP_POINTS_MAX = 4 * HP_BUCKETS + 2 * MARKS_MAX  # 1,000
# Shard damage chart and CSV rows: at most this many time buckets, none shorter than a second.
SHARD_BUCKETS_MAX = 120
SHARD_BUCKET_MIN_MS = 1_000
# Shards drawn as their own series; the rest are summed into OTHER_SERIES.
SHARD_SERIES_MAX = 8
OTHER_SERIES = "(other)"
SAGA_MARKS_MAX = 200
LEADERBOARD_DEFAULT = 10
LEADERBOARD_MAX = 100
# The phase above the first threshold (bosses.services.OPENING_PHASE_NAME; services sit above
# the selectors, so the name is repeated here rather than imported).
OPENING_PHASE = "Opening"
ITERATOR_CHUNK = 2_000
PEAK_WINDOW_MS = 1_000


class UnknownFight(UnknownBoss):
    """The boss has no such fight (never started, not archived yet, or a bad number)."""


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def _iso_ms(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _thresholds(boss: BossEncounter, max_hp: int) -> list[tuple[int, str]]:
    try:
        return phase_thresholds(parse_phases(boss.phases), max_hp)
    except InvalidInput:  # a damaged config: the report still shows everything but phases
        return []


def _phase_of(thresholds: list[tuple[int, str]], hp: int) -> tuple[int, str]:
    phase, name = 0, OPENING_PHASE
    for i, (at_hp, at_name) in enumerate(thresholds, start=1):
        if hp <= at_hp:
            phase, name = i, at_name
    return phase, name


class _HpBucket:
    """First, last, lowest and highest point of one HP time bucket: (ts_ms, version, hp)."""

    __slots__ = ("first", "high", "last", "low")

    def __init__(self, point: tuple[int, int, int]) -> None:
        self.first = self.last = self.low = self.high = point

    def add(self, point: tuple[int, int, int]) -> None:
        self.last = point
        if point[2] < self.low[2]:
            self.low = point
        if point[2] > self.high[2]:
            self.high = point

    def points(self) -> tuple[tuple[int, int, int], ...]:
        return (self.first, self.high, self.low, self.last)


def fight_report(*, boss: BossEncounter, fight: int, top: int = LEADERBOARD_DEFAULT) -> dict[str, Any]:
    """Everything the report page, its JSON and its CSV show for one fight of ``boss``.

    Raises :class:`UnknownFight` (code ``unknown_boss``) for a fight number outside
    ``1..boss.fight`` or a fight with no archived event. One pass over the events; the
    result's size does not grow with the fight's length (see the module's bounds).
    """
    if fight < 1 or fight > boss.fight:
        raise UnknownFight(f"boss {boss.slug!r} has no fight {fight} (fights 1 to {boss.fight})")
    events = BossEvent.objects.filter(boss=boss, fight=fight)
    span = events.aggregate(t0=Min("ts_ms"), t1=Max("ts_ms"), n=Count("id"), v1=Min("version"))
    if not span["n"]:
        raise UnknownFight(f"fight {fight} of boss {boss.slug!r} has no archived event yet")
    t0, t1, n_events = int(span["t0"]), int(span["t1"]), int(span["n"])
    span_ms = t1 - t0
    top = max(1, min(int(top), LEADERBOARD_MAX))

    # The fight's max HP is the seed entry's HP (version 1); a config changed since does not count.
    first_hp = events.filter(version=span["v1"]).values_list("hp", flat=True).first()
    max_hp = int(first_hp) if span["v1"] == 1 and first_hp else boss.max_hp
    thresholds = _thresholds(boss, max_hp)

    hp_bucket_ms = max(1, math.ceil((span_ms + 1) / HP_BUCKETS))
    shard_bucket_ms = max(SHARD_BUCKET_MIN_MS, math.ceil((span_ms + 1) / SHARD_BUCKETS_MAX))
    n_shard_buckets = min(SHARD_BUCKETS_MAX, max(1, math.ceil((span_ms + 1) / shard_bucket_ms)))

    hp_buckets: dict[int, _HpBucket] = {}
    shard_buckets: list[dict[str, int]] = [{} for _ in range(n_shard_buckets)]
    bucket_applied = [0] * n_shard_buckets
    bucket_overkill = [0] * n_shard_buckets
    bucket_ticks = [0] * n_shard_buckets
    bucket_hp_end: list[int | None] = [None] * n_shard_buckets
    phase_marks: list[dict[str, Any]] = []
    status_marks: list[dict[str, Any]] = []
    mark_points: list[tuple[int, int, int]] = []
    shard_totals: dict[str, int] = {}
    player_totals: dict[str, int] = {}
    applied_total = overkill_total = accepted_total = ticks = 0
    peak_dps, peak_at_ms = 0, None
    window_start, window_sum = None, 0
    prev_status: str | None = None
    prev_phase: int | None = None
    last: tuple[int, int, int, str] | None = None

    rows = events.order_by("version").values_list(
        "version", "kind", "status", "hp", "applied", "overkill", "deltas", "players", "ts_ms"
    )
    for version, kind, status, hp, applied, overkill, deltas, players, ts_ms in rows.iterator(
        chunk_size=ITERATOR_CHUNK
    ):
        point = (ts_ms, version, hp)
        rel = min(max(ts_ms - t0, 0), span_ms)
        hb = rel // hp_bucket_ms
        if hb in hp_buckets:
            hp_buckets[hb].add(point)
        else:
            hp_buckets[hb] = _HpBucket(point)
        sb = min(rel // shard_bucket_ms, n_shard_buckets - 1)
        bucket_hp_end[sb] = hp

        if status != prev_status:
            if len(status_marks) < MARKS_MAX:
                status_marks.append({"t_ms": rel, "ts_ms": ts_ms, "version": version, "status": status})
                mark_points.append(point)
            prev_status = status
        phase, phase_name = _phase_of(thresholds, hp)
        if phase != prev_phase:
            if prev_phase is not None and len(phase_marks) < MARKS_MAX:
                phase_marks.append(
                    {
                        "t_ms": rel,
                        "ts_ms": ts_ms,
                        "version": version,
                        "hp": hp,
                        "phase": phase,
                        "name": phase_name,
                    }
                )
                mark_points.append(point)
            prev_phase = phase

        if kind == "tick":
            ticks += 1
            bucket_ticks[sb] += 1
        applied_total += applied
        overkill_total += overkill
        bucket_applied[sb] += applied
        bucket_overkill[sb] += overkill
        damage = shard_buckets[sb]
        for field, raw in deltas.items():
            parsed = keys.parse_session(field)
            if parsed is None:
                continue
            amount = int(raw)
            accepted_total += amount
            shard_totals[parsed.shard_key] = shard_totals.get(parsed.shard_key, 0) + amount
            damage[parsed.shard_key] = damage.get(parsed.shard_key, 0) + amount
        for player, amount in players.items():
            player_totals[player] = player_totals.get(player, 0) + int(amount)

        # Peak DPS: HP removed in one aligned wall-clock second.
        window = ts_ms // PEAK_WINDOW_MS
        if window != window_start:
            window_start, window_sum = window, 0
        window_sum += applied
        if window_sum > peak_dps:
            peak_dps, peak_at_ms = window_sum, window * PEAK_WINDOW_MS
        last = (ts_ms, version, hp, status)

    assert last is not None  # n_events > 0
    kept: dict[int, tuple[int, int, int]] = {}
    for bucket in hp_buckets.values():
        for p in bucket.points():
            kept[p[1]] = p
    for p in mark_points:
        kept[p[1]] = p
    hp_points = [
        {"t_ms": min(max(ts - t0, 0), span_ms), "ts_ms": ts, "version": v, "hp": hp}
        for ts, v, hp in sorted(kept.values(), key=lambda p: p[1])
    ]

    ranked_shards = sorted(shard_totals.items(), key=lambda x: (-x[1], x[0]))
    series = [name for name, _ in ranked_shards[:SHARD_SERIES_MAX]]
    has_other = len(ranked_shards) > SHARD_SERIES_MAX
    buckets = []
    hp_carry = max_hp
    for i in range(n_shard_buckets):
        per = shard_buckets[i]
        row = [per.get(name, 0) for name in series]
        if has_other:
            row.append(sum(v for k, v in per.items() if k not in series))
        if bucket_hp_end[i] is not None:
            hp_carry = bucket_hp_end[i]
        buckets.append(
            {
                "start_ms": i * shard_bucket_ms,
                "end_ms": min((i + 1) * shard_bucket_ms, span_ms + 1),
                "ticks": bucket_ticks[i],
                "applied": bucket_applied[i],
                "overkill": bucket_overkill[i],
                "accepted": sum(per.values()),
                "hp_end": hp_carry,
                "damage": row,
            }
        )

    sagas = _saga_marks(boss=boss, fight=fight, t0=t0)
    leaderboard = _leaderboard(boss=boss, fight=fight, top=top, player_totals=player_totals)
    victory = (
        SagaRun.objects.filter(boss=boss, fight=fight, kind=SagaKind.VICTORY)
        .values("status", "finished_at")
        .first()
    )
    running = fight == boss.fight and boss.status in (BossStatus.LIVE, BossStatus.PAUSED)
    final_ts, _, final_hp, final_status = last
    return {
        "boss": {"id": boss.pk, "slug": boss.slug, "name": boss.name},
        "fight": fight,
        "running": running,
        "summary": {
            "started_ms": t0,
            "ended_ms": t1,
            "started_at": _iso_ms(t0),
            "ended_at": _iso_ms(t1),
            "duration_s": round(span_ms / 1000, 3),
            "max_hp": max_hp,
            "final_hp": final_hp,
            "final_status": final_status,
            "hp_left_pct": round(100 * final_hp / max_hp, 2) if max_hp else 0,
            "total_damage": applied_total,
            "overkill": overkill_total,
            "accepted": accepted_total,
            "peak_dps": peak_dps,
            "peak_dps_at_ms": None if peak_at_ms is None else max(peak_at_ms - t0, 0),
            # over at least one second: a fight shorter than that did not deal more per second
            "avg_dps": round(applied_total * 1000 / max(span_ms, PEAK_WINDOW_MS)),
            "players": leaderboard["players"],
            "shards": len(shard_totals),
            "events": n_events,
            "ticks": ticks,
            "crashes": sum(1 for s in sagas["marks"] if s["kind"] == SagaKind.CRASH),
            "restores": sum(1 for s in sagas["marks"] if s["kind"] == SagaKind.RESTORE),
            "victory_saga": victory["status"] if victory else None,
            "last_event_at_ms": final_ts,
        },
        "hp": {
            "max_hp": max_hp,
            "events": n_events,
            "bucket_ms": hp_bucket_ms,
            "points": hp_points,
            "phases": [{"name": name, "hp": at_hp} for at_hp, name in thresholds],
        },
        "marks": {"phases": phase_marks, "statuses": status_marks, "sagas": sagas["marks"]},
        "sagas_total": sagas["total"],
        "shards": {
            "bucket_ms": shard_bucket_ms,
            "series": series + ([OTHER_SERIES] if has_other else []),
            "buckets": buckets,
            "totals": [
                {"rank": i, "shard": name, "damage": dmg}
                for i, (name, dmg) in enumerate(ranked_shards, start=1)
            ],
        },
        "leaderboard": leaderboard,
        "rewards": _reward_totals(boss=boss, fight=fight),
    }


def _saga_marks(*, boss: BossEncounter, fight: int, t0: int) -> dict[str, Any]:
    """Crash and restore sagas of the fight as timeline marks (the first SAGA_MARKS_MAX)."""
    qs = SagaRun.objects.filter(boss=boss, fight=fight, kind__in=(SagaKind.CRASH, SagaKind.RESTORE))
    marks = []
    for kind, shard, epoch, policy, amount, status, detail, started, finished in qs.order_by(
        "started_at", "id"
    ).values_list(
        "kind", "shard_key", "epoch", "policy", "amount", "status", "detail", "started_at", "finished_at"
    )[:SAGA_MARKS_MAX]:
        ts = _ms(started) or t0
        marks.append(
            {
                "kind": kind,
                "t_ms": ts - t0,
                "ts_ms": ts,
                "at": _iso_ms(ts),
                "finished_at": _iso_ms(_ms(finished)),
                "shard": shard,
                "epoch": epoch,
                "policy": policy,
                "amount": amount,
                "status": status,
                "reason": (detail or {}).get("reason", ""),
            }
        )
    total = qs.count() if len(marks) == SAGA_MARKS_MAX else len(marks)
    return {"marks": marks, "total": total}


def _leaderboard(
    *, boss: BossEncounter, fight: int, top: int, player_totals: dict[str, int]
) -> dict[str, Any]:
    """Top players: the victory saga's ranking when it ran, else the archived per-tick totals."""
    ranked = Contribution.objects.filter(boss=boss, fight=fight, kind=ContributionKind.PLAYER)
    rows = list(ranked.filter(rank__lte=top).order_by("rank").values("rank", "name", "damage"))
    if rows:
        return {"source": "contributions", "rows": rows, "players": ranked.count()}
    best = heapq.nsmallest(top, ((-d, name) for name, d in player_totals.items() if d > 0))
    return {
        "source": "archive",
        "rows": [{"rank": i, "name": name, "damage": -neg} for i, (neg, name) in enumerate(best, start=1)],
        "players": sum(1 for d in player_totals.values() if d > 0),
    }


def _reward_totals(*, boss: BossEncounter, fight: int) -> list[dict[str, Any]]:
    """Grants per tier, best tier first: players, their damage, the rank range, claims."""
    rows = (
        RewardGrant.objects.filter(boss=boss, fight=fight)
        .values("tier")
        .annotate(
            players=Count("id"),
            damage=Sum("damage"),
            best_rank=Min("rank"),
            worst_rank=Max("rank"),
            claimed=Count("claimed_at"),
        )
        .order_by("best_rank")
    )
    return [dict(r) for r in rows]
