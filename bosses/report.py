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

from bosses.fight_configs import fight_config_get
from bosses.models import (
    END_KINDS,
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
from core import keys
from core.errors import InvalidInput, UnknownBoss
from core.phases import parse_phases, phase_of, phase_thresholds

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


def _thresholds(phases: str, max_hp: int) -> list[tuple[int, str]]:
    try:
        return phase_thresholds(parse_phases(phases), max_hp)
    except InvalidInput:  # a damaged config: the report still shows everything but phases
        return []


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


class _Span:
    """The fight's time span and the chart geometry derived from it (fixed before the scan)."""

    __slots__ = (
        "hp_bucket_ms",
        "max_hp",
        "n_events",
        "n_shard_buckets",
        "shard_bucket_ms",
        "span_ms",
        "t0",
        "t1",
        "thresholds",
    )

    def __init__(
        self, *, t0: int, t1: int, n_events: int, max_hp: int, thresholds: list[tuple[int, str]]
    ) -> None:
        self.t0, self.t1, self.n_events = t0, t1, n_events
        self.span_ms = t1 - t0
        self.max_hp = max_hp
        self.thresholds = thresholds
        self.hp_bucket_ms = max(1, math.ceil((self.span_ms + 1) / HP_BUCKETS))
        self.shard_bucket_ms = max(SHARD_BUCKET_MIN_MS, math.ceil((self.span_ms + 1) / SHARD_BUCKETS_MAX))
        self.n_shard_buckets = min(
            SHARD_BUCKETS_MAX, max(1, math.ceil((self.span_ms + 1) / self.shard_bucket_ms))
        )

    def rel_ms(self, ts_ms: int) -> int:
        """``ts_ms`` as milliseconds since the fight's first event, clamped to the span."""
        return min(max(ts_ms - self.t0, 0), self.span_ms)


def _fight_span(*, boss: BossEncounter, fight: int, events: Any) -> _Span:
    """The span of the archived ``events`` of ``fight``, or :class:`UnknownFight` for none.

    The fight's max HP and phases are its frozen configuration's (docs/liveops.md); a fight
    from before configurations were kept takes its max HP from the seed entry (version 1).
    A config changed since does not count.
    """
    span = events.aggregate(t0=Min("ts_ms"), t1=Max("ts_ms"), n=Count("id"), v1=Min("version"))
    if not span["n"]:
        raise UnknownFight(f"fight {fight} of boss {boss.slug!r} has no archived event yet")
    setup = fight_config_get(boss=boss, fight=fight)
    if setup.frozen:
        max_hp, thresholds = setup.max_hp, setup.thresholds
    else:
        first_hp = events.filter(version=span["v1"]).values_list("hp", flat=True).first()
        max_hp = int(first_hp) if span["v1"] == 1 and first_hp else boss.max_hp
        thresholds = _thresholds(boss.phases, max_hp)
    return _Span(
        t0=int(span["t0"]),
        t1=int(span["t1"]),
        n_events=int(span["n"]),
        max_hp=max_hp,
        thresholds=thresholds,
    )


class _Scan:
    """Everything the report keeps from one ordered pass over the fight's events.

    Memory is bounded by the span's bucket counts and MARKS_MAX, not by the number of events.
    """

    def __init__(self, span: _Span) -> None:
        n = span.n_shard_buckets
        self.span = span
        self.hp_buckets: dict[int, _HpBucket] = {}
        self.shard_buckets: list[dict[str, int]] = [{} for _ in range(n)]
        self.bucket_applied = [0] * n
        self.bucket_overkill = [0] * n
        self.bucket_ticks = [0] * n
        self.bucket_hp_end: list[int | None] = [None] * n
        self.phase_marks: list[dict[str, Any]] = []
        self.status_marks: list[dict[str, Any]] = []
        self.mark_points: list[tuple[int, int, int]] = []
        self.shard_totals: dict[str, int] = {}
        self.player_totals: dict[str, int] = {}
        self.applied_total = self.overkill_total = self.accepted_total = self.ticks = 0
        self.peak_dps, self.peak_at_ms = 0, None
        self.window_start: int | None = None
        self.window_sum = 0
        self.prev_status: str | None = None
        self.prev_phase: int | None = None
        self.last: tuple[int, int, int, str] | None = None

    def add(self, event: tuple[Any, ...]) -> None:
        """Fold one event row (in version order) into the buckets, marks and totals."""
        version, kind, status, hp, applied, overkill, deltas, players, ts_ms = event
        point = (ts_ms, version, hp)
        rel = self.span.rel_ms(ts_ms)
        hb = rel // self.span.hp_bucket_ms
        if hb in self.hp_buckets:
            self.hp_buckets[hb].add(point)
        else:
            self.hp_buckets[hb] = _HpBucket(point)
        sb = min(rel // self.span.shard_bucket_ms, self.span.n_shard_buckets - 1)
        self.bucket_hp_end[sb] = hp
        self._mark(point=point, rel=rel, status=status)
        if kind == "tick":
            self.ticks += 1
            self.bucket_ticks[sb] += 1
        self._damage(sb=sb, applied=applied, overkill=overkill, deltas=deltas, players=players)
        self._peak(ts_ms=ts_ms, applied=applied)
        self.last = (ts_ms, version, hp, status)

    def _mark(self, *, point: tuple[int, int, int], rel: int, status: str) -> None:
        """Status and phase changes as timeline marks (the first MARKS_MAX of each kind)."""
        ts_ms, version, hp = point
        if status != self.prev_status:
            if len(self.status_marks) < MARKS_MAX:
                self.status_marks.append({"t_ms": rel, "ts_ms": ts_ms, "version": version, "status": status})
                self.mark_points.append(point)
            self.prev_status = status
        phase, phase_name = phase_of(self.span.thresholds, hp)
        if phase != self.prev_phase:
            # the opening phase is where the fight starts, not a change
            if self.prev_phase is not None and len(self.phase_marks) < MARKS_MAX:
                self.phase_marks.append(
                    {
                        "t_ms": rel,
                        "ts_ms": ts_ms,
                        "version": version,
                        "hp": hp,
                        "phase": phase,
                        "name": phase_name,
                    }
                )
                self.mark_points.append(point)
            self.prev_phase = phase

    def _damage(
        self, *, sb: int, applied: int, overkill: int, deltas: dict[str, Any], players: dict[str, Any]
    ) -> None:
        """Applied, overkill and accepted damage into the totals and shard bucket ``sb``."""
        self.applied_total += applied
        self.overkill_total += overkill
        self.bucket_applied[sb] += applied
        self.bucket_overkill[sb] += overkill
        damage = self.shard_buckets[sb]
        for field, raw in deltas.items():
            parsed = keys.parse_session(field)
            if parsed is None:
                continue
            amount = int(raw)
            self.accepted_total += amount
            self.shard_totals[parsed.shard_key] = self.shard_totals.get(parsed.shard_key, 0) + amount
            damage[parsed.shard_key] = damage.get(parsed.shard_key, 0) + amount
        for player, amount in players.items():
            self.player_totals[player] = self.player_totals.get(player, 0) + int(amount)

    def _peak(self, *, ts_ms: int, applied: int) -> None:
        """Peak DPS: HP removed in one aligned wall-clock second."""
        window = ts_ms // PEAK_WINDOW_MS
        if window != self.window_start:
            self.window_start, self.window_sum = window, 0
        self.window_sum += applied
        if self.window_sum > self.peak_dps:
            self.peak_dps, self.peak_at_ms = self.window_sum, window * PEAK_WINDOW_MS


def _scan_events(*, events: Any, span: _Span) -> _Scan:
    """One streamed pass over the events in version order (chunks of ITERATOR_CHUNK rows)."""
    scan = _Scan(span)
    rows = events.order_by("version").values_list(
        "version", "kind", "status", "hp", "applied", "overkill", "deltas", "players", "ts_ms"
    )
    for row in rows.iterator(chunk_size=ITERATOR_CHUNK):
        scan.add(row)
    return scan


def _hp_points(scan: _Scan) -> list[dict[str, Any]]:
    """The HP chart: every bucket's kept points plus the marks' points, in version order."""
    kept: dict[int, tuple[int, int, int]] = {}
    for bucket in scan.hp_buckets.values():
        for p in bucket.points():
            kept[p[1]] = p
    for p in scan.mark_points:
        kept[p[1]] = p
    return [
        {"t_ms": scan.span.rel_ms(ts), "ts_ms": ts, "version": v, "hp": hp}
        for ts, v, hp in sorted(kept.values(), key=lambda p: p[1])
    ]


def _shard_chart(scan: _Scan) -> dict[str, Any]:
    """The shard damage chart: the top SHARD_SERIES_MAX shards as series, the rest summed."""
    span = scan.span
    ranked_shards = sorted(scan.shard_totals.items(), key=lambda x: (-x[1], x[0]))
    series = [name for name, _ in ranked_shards[:SHARD_SERIES_MAX]]
    has_other = len(ranked_shards) > SHARD_SERIES_MAX
    buckets = []
    hp_carry = span.max_hp  # a bucket with no event ends at the HP the one before it ended at
    for i in range(span.n_shard_buckets):
        per = scan.shard_buckets[i]
        row = [per.get(name, 0) for name in series]
        if has_other:
            row.append(sum(v for k, v in per.items() if k not in series))
        hp_end = scan.bucket_hp_end[i]
        if hp_end is not None:
            hp_carry = hp_end
        buckets.append(
            {
                "start_ms": i * span.shard_bucket_ms,
                "end_ms": min((i + 1) * span.shard_bucket_ms, span.span_ms + 1),
                "ticks": scan.bucket_ticks[i],
                "applied": scan.bucket_applied[i],
                "overkill": scan.bucket_overkill[i],
                "accepted": sum(per.values()),
                "hp_end": hp_carry,
                "damage": row,
            }
        )
    return {
        "bucket_ms": span.shard_bucket_ms,
        "series": series + ([OTHER_SERIES] if has_other else []),
        "buckets": buckets,
        "totals": [
            {"rank": i, "shard": name, "damage": dmg} for i, (name, dmg) in enumerate(ranked_shards, start=1)
        ],
    }


def _summary(
    *, scan: _Scan, sagas: dict[str, Any], leaderboard: dict[str, Any], victory: dict[str, Any] | None
) -> dict[str, Any]:
    """The report's headline figures: span, HP, damage, DPS, counts and saga outcomes."""
    span = scan.span
    assert scan.last is not None  # n_events > 0
    final_ts, _, final_hp, final_status = scan.last
    return {
        "started_ms": span.t0,
        "ended_ms": span.t1,
        "started_at": _iso_ms(span.t0),
        "ended_at": _iso_ms(span.t1),
        "duration_s": round(span.span_ms / 1000, 3),
        "max_hp": span.max_hp,
        "final_hp": final_hp,
        "final_status": final_status,
        "hp_left_pct": round(100 * final_hp / span.max_hp, 2) if span.max_hp else 0,
        "total_damage": scan.applied_total,
        "overkill": scan.overkill_total,
        "accepted": scan.accepted_total,
        "peak_dps": scan.peak_dps,
        "peak_dps_at_ms": None if scan.peak_at_ms is None else max(scan.peak_at_ms - span.t0, 0),
        # over at least one second: a fight shorter than that did not deal more per second
        "avg_dps": round(scan.applied_total * 1000 / max(span.span_ms, PEAK_WINDOW_MS)),
        "players": leaderboard["players"],
        "shards": len(scan.shard_totals),
        "events": span.n_events,
        "ticks": scan.ticks,
        "crashes": sum(1 for s in sagas["marks"] if s["kind"] == SagaKind.CRASH),
        # sessions a crash saga ended without a crash: bye (left), a new auth, a retirement
        "left": sum(1 for s in sagas["marks"] if s["kind"] in END_KINDS),
        "restores": sum(1 for s in sagas["marks"] if s["kind"] == SagaKind.RESTORE),
        "victory_saga": victory["status"] if victory else None,
        "last_event_at_ms": final_ts,
    }


def fight_report(*, boss: BossEncounter, fight: int, top: int = LEADERBOARD_DEFAULT) -> dict[str, Any]:
    """Everything the report page, its JSON and its CSV show for one fight of ``boss``.

    Raises :class:`UnknownFight` (code ``unknown_boss``) for a fight number outside
    ``1..boss.fight`` or a fight with no archived event. One pass over the events; the
    result's size does not grow with the fight's length (see the module's bounds).
    """
    if fight < 1 or fight > boss.fight:
        raise UnknownFight(f"boss {boss.slug!r} has no fight {fight} (fights 1 to {boss.fight})")
    events = BossEvent.objects.filter(boss=boss, fight=fight)
    span = _fight_span(boss=boss, fight=fight, events=events)
    top = max(1, min(int(top), LEADERBOARD_MAX))
    scan = _scan_events(events=events, span=span)
    sagas = _saga_marks(boss=boss, fight=fight, t0=span.t0)
    leaderboard = _leaderboard(boss=boss, fight=fight, top=top, player_totals=scan.player_totals)
    victory = (
        SagaRun.objects.filter(boss=boss, fight=fight, kind=SagaKind.VICTORY)
        .values("status", "finished_at")
        .first()
    )
    return {
        "boss": {"id": boss.pk, "slug": boss.slug, "name": boss.name},
        "fight": fight,
        "running": fight == boss.fight and boss.status in (BossStatus.LIVE, BossStatus.PAUSED),
        "summary": _summary(scan=scan, sagas=sagas, leaderboard=leaderboard, victory=victory),
        "hp": {
            "max_hp": span.max_hp,
            "events": span.n_events,
            "bucket_ms": span.hp_bucket_ms,
            "points": _hp_points(scan),
            "phases": [{"name": name, "hp": at_hp} for at_hp, name in span.thresholds],
        },
        "marks": {"phases": scan.phase_marks, "statuses": scan.status_marks, "sagas": sagas["marks"]},
        "sagas_total": sagas["total"],
        "shards": _shard_chart(scan),
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
        reason = (detail or {}).get("reason", "")
        marks.append(
            {
                # a crash saga is named by how its session ended: crash, left, replaced, retired
                "kind": session_end_kind(reason) if kind == SagaKind.CRASH else kind,
                "t_ms": ts - t0,
                "ts_ms": ts,
                "at": _iso_ms(ts),
                "finished_at": _iso_ms(_ms(finished)),
                "shard": shard,
                "epoch": epoch,
                "policy": policy,
                "amount": amount,
                "status": status,
                "reason": reason,
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
