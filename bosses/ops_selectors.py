"""Reads for the operator dashboard: per-shard health, DPS, tick lag, sagas and events.

Everything here only reads. Redis figures come from one pipelined round trip per boss
(the hashes of core/keys.py). "Now" comes from a :class:`core.clock.Clock`: by default the
authority's own clock, Redis ``TIME`` (the clock every script stamps with), so ages never
mix two machines' clocks. Tests pass a :class:`core.clock.ManualClock` (keyword ``clock``)
to move "now" instead of waiting for heartbeats to age.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Q

from bosses.models import BossEncounter, SagaKind, SagaRun, session_end_kind
from core import authority, keys, messages
from core.clients import slot_client
from core.clock import Clock, RedisClock
from core.redis import get_redis
from shards.models import Shard
from worldboss_sdk.protocol import ENDED_STATUSES

# DPS is the damage applied by ticks that landed in this trailing window.
DPS_WINDOW_MS = 5_000
# A shard whose freshest heartbeat is older than this many heartbeat intervals is "late"
# (still inside its timeout, so not fenced yet): the operator sees trouble coming.
LATE_AFTER_INTERVALS = 2
EVENTS_KEEP = 20
SAGAS_KEEP = 10
HP_SERIES_KEEP = 600  # one minute of 10 Hz ticks for the HP-over-time chart
TICK_SAMPLE = 100  # recent beat ticks used for the interval percentiles


class ShardHealth:
    """Health of one shard on one boss, as the dashboard colours it."""

    OK = "ok"  # a fresh heartbeat or delta
    LATE = "late"  # silent past LATE_AFTER_INTERVALS heartbeats, not yet timed out
    CRASHED = "crashed"  # every session fenced, the newest one by a crash (or marked crashed)
    LEFT = "left"  # every session ended, the newest one cleanly (bye, replaced): not a crash
    RETIRED = "retired"
    IDLE = "idle"  # never spoke to this boss
    DONE = "done"  # the fight is over: silence is expected, not a warning


@dataclass
class SessionRow:
    """One (shard, epoch) session of a boss."""

    epoch: int
    last_seq: int = 0
    buffered: int = 0
    recovered_pending: int = 0
    held: int = 0
    heartbeat_age_ms: int | None = None
    settled: str = ""  # "<policy>:<amount>" once fenced
    ended: str = ""  # once fenced: "crash", "left", "replaced" or "retired" (session_end_kind)


@dataclass
class ShardRow:
    """One row of the per-shard table."""

    key: str
    name: str
    region: str
    status: str  # the shard's own status in SQL (online / crashed / retired)
    health: str
    buffered: int = 0
    held: int = 0
    contribution: int = 0
    heartbeat_age_ms: int | None = None
    epoch: int | None = None  # the newest session's epoch
    last_seq: int = 0  # ... and its last accepted seq
    sessions: list[SessionRow] = field(default_factory=list)


def _shard_health(*, row: ShardRow, heartbeat_interval_ms: int, boss_status: str = "live") -> str:
    if row.status == "retired":
        return ShardHealth.RETIRED
    if not row.sessions:
        return ShardHealth.CRASHED if row.status == "crashed" else ShardHealth.IDLE
    open_sessions = [s for s in row.sessions if not s.settled]
    if not open_sessions:
        newest = max(row.sessions, key=lambda s: s.epoch)
        return ShardHealth.CRASHED if newest.ended in ("", SagaKind.CRASH) else ShardHealth.LEFT
    if boss_status in ENDED_STATUSES:
        return ShardHealth.DONE
    ages = [s.heartbeat_age_ms for s in open_sessions if s.heartbeat_age_ms is not None]
    if ages and min(ages) > heartbeat_interval_ms * LATE_AFTER_INTERVALS:
        return ShardHealth.LATE
    return ShardHealth.OK


def ops_shard_rows(
    *,
    boss: BossEncounter,
    raw: dict[str, dict[str, str]] | None = None,
    now_ms: int | None = None,
    boss_status: str | None = None,
    clock: Clock | None = None,
) -> list[ShardRow]:
    """Per-shard buffer, held, contribution, heartbeat age, last seq and health of ``boss``.

    ``raw`` (the boss's hashes, as :func:`_read_hashes` returns them) and ``now_ms`` let a
    caller that already read them avoid a second round trip. Otherwise "now" is read from
    ``clock`` (default: Redis ``TIME``, in the same round trip as the hashes).
    """
    client = get_redis()
    if raw is None:
        raw, read_ms = _read_hashes(client, boss.pk, clock=clock)
        now_ms = read_ms if now_ms is None else now_ms
    elif now_ms is None:
        now_ms = _now_ms(client, clock)
    if boss_status is None:
        boss_status = client.hget(keys.BossKeys(boss.pk).state, "status") or boss.status
    sessions = _session_rows(raw, now_ms=now_ms)
    ended = _session_endings([(boss.pk, boss.fight)] if raw["settled"] else [])
    for shard_key, by_epoch in sessions.items():
        for epoch, session in by_epoch.items():
            if session.settled:
                session.ended = ended.get((boss.pk, shard_key, epoch), SagaKind.CRASH)
    known = {s.key: s for s in Shard.objects.all()}
    rows: list[ShardRow] = []
    for key in sorted(set(known) | set(sessions) | set(raw["contrib"])):
        row = _shard_row(
            key=key,
            shard=known.get(key),
            by_epoch=sessions.get(key, {}),
            contribution=raw["contrib"].get(key, 0),
        )
        if row is None:
            continue
        row.health = _shard_health(
            row=row, heartbeat_interval_ms=boss.heartbeat_interval_ms, boss_status=boss_status
        )
        rows.append(row)
    return rows


def _session_endings(fights: list[tuple[int, int]]) -> dict[tuple[int, str, int], str]:
    """``{(boss id, shard, epoch): ending}`` of the crash sagas of the given (boss, fight)s:
    how each fenced session ended (:func:`bosses.models.session_end_kind`). One query."""
    if not fights:
        return {}
    which = Q()
    for boss_id, fight in fights:
        which |= Q(boss_id=boss_id, fight=fight)
    rows = SagaRun.objects.filter(which, kind=SagaKind.CRASH).values_list(
        "boss_id", "shard_key", "epoch", "detail"
    )
    return {
        (boss_id, shard_key, int(epoch or 0)): session_end_kind((detail or {}).get("reason"))
        for boss_id, shard_key, epoch, detail in rows
    }


def _session_rows(raw: dict[str, dict[str, str]], *, now_ms: int) -> dict[str, dict[int, SessionRow]]:
    """The boss's hashes per shard and epoch: buffered, recovered, seq, held, heartbeat, settled.

    A field that does not name a session (``<shard>:<epoch>``) is left out.
    """
    sessions: dict[str, dict[int, SessionRow]] = {}

    def session(sess: str) -> SessionRow | None:
        shard_key, _, epoch = sess.partition(":")
        if not epoch.isdigit():
            return None
        return sessions.setdefault(shard_key, {}).setdefault(int(epoch), SessionRow(epoch=int(epoch)))

    _add_buffers(raw["buf"], session=session)
    for sess, value in raw["seq"].items():
        if (row := session(sess)) is not None:
            row.last_seq = int(value)
    for sess, value in raw["held"].items():
        if (row := session(sess)) is not None:
            row.held = int(value)
    for sess, value in raw["hb"].items():
        if (row := session(sess)) is not None:
            row.heartbeat_age_ms = max(0, now_ms - int(value))
    for sess, value in raw["settled"].items():
        if (row := session(sess)) is not None:
            row.settled = value
    return sessions


def _add_buffers(buf: dict[str, str], *, session: Callable[[str], SessionRow | None]) -> None:
    """The buffer hash into the session rows: a session's own deltas, and the recovered damage
    a fair crash saga put back under its recovered field (``keys.recovered_field``)."""
    for sess, value in buf.items():
        base, recovered, _ = sess.partition(keys.RECOVERED_SUFFIX)
        row = session(base)
        if row is not None:
            if recovered:
                row.recovered_pending += int(value)
            else:
                row.buffered += int(value)


def _shard_row(
    *, key: str, shard: Shard | None, by_epoch: dict[int, SessionRow], contribution: str | int
) -> ShardRow | None:
    """One shard's row, its sessions newest epoch first (health not set yet); None for a key
    that is neither a registered shard nor has a session or a contribution."""
    ordered = [by_epoch[e] for e in sorted(by_epoch, reverse=True)]
    row = ShardRow(
        key=key,
        name=shard.name if shard else key,
        region=shard.region if shard else "",
        status=shard.status if shard else "unknown",
        health=ShardHealth.IDLE,
        sessions=ordered,
        contribution=int(contribution),
    )
    if shard is None and not ordered and not row.contribution:
        return None
    row.buffered = sum(s.buffered + s.recovered_pending for s in ordered)
    row.held = sum(s.held for s in ordered if not s.settled)
    ages = [s.heartbeat_age_ms for s in ordered if s.heartbeat_age_ms is not None and not s.settled]
    row.heartbeat_age_ms = min(ages) if ages else None
    if ordered:
        row.epoch, row.last_seq = ordered[0].epoch, ordered[0].last_seq
    return row


def _now_ms(client, clock: Clock | None) -> int:
    """``clock``'s time, or Redis ``TIME`` (:class:`core.clock.RedisClock`) when none is given."""
    return (clock or RedisClock(client)).now_ms()


def _read_hashes(
    client, boss_id: int, *, clock: Clock | None = None
) -> tuple[dict[str, dict[str, str]], int]:
    """The boss's session hashes in one MULTI, and "now" (see :func:`_now_ms`).

    With no ``clock``, "now" is Redis ``TIME`` of the node that holds the boss's keys (the
    clock its scripts stamp heartbeats with), read right after the MULTI. Not inside it: a
    Redis Cluster refuses a keyless command in a transaction bound to one slot.
    """
    k = keys.BossKeys(boss_id)
    names = ("buf", "seq", "held", "hb", "settled", "contrib")
    pipe = slot_client(client, k.state).pipeline(transaction=True)
    for name in names:
        pipe.hgetall(getattr(k, name))
    values = pipe.execute()
    return dict(zip(names, values)), (clock or RedisClock(client, key=k.state)).now_ms()


def _log_entry(entry_id: str, f: dict[str, str]) -> dict[str, Any]:
    try:
        deltas = json.loads(f.get("d") or "{}")
    except ValueError:
        deltas = {}
    return {
        "version": int(f["v"]),
        "kind": f.get("kind", ""),
        "status": f.get("status", ""),
        "hp": int(f["hp"]),
        "applied": int(f.get("applied", 0)),
        "overkill": int(f.get("overkill", 0)),
        "deltas": deltas,
        "ts": int(f["ts"]),
    }


def ops_log_tail(*, boss_id: int, count: int = EVENTS_KEEP) -> list[dict[str, Any]]:
    """The newest ``count`` event-log entries (ticks and status changes), newest first."""
    entries = get_redis().xrevrange(keys.BossKeys(boss_id).log, count=count)
    return [_log_entry(i, f) for i, f in entries]


def ops_hp_series(*, boss_id: int, count: int = HP_SERIES_KEEP) -> list[list[int]]:
    """``[[ts_ms, hp, version], ...]`` oldest first, from the event-log tail (for the chart)."""
    return [[e["ts"], e["hp"], e["version"]] for e in reversed(ops_log_tail(boss_id=boss_id, count=count))]


def ops_dps(*, entries: list[dict[str, Any]], now_ms: int, window_ms: int = DPS_WINDOW_MS) -> dict[str, Any]:
    """Damage per second applied by the ticks within ``window_ms`` before ``now_ms``."""
    applied = sum(e["applied"] for e in entries if e["kind"] == "tick" and e["ts"] > now_ms - window_ms)
    return {"window_ms": window_ms, "applied": applied, "dps": round(applied * 1000 / window_ms, 1)}


def _percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ops_tick_lag(*, state: dict[str, str], tick_times_ms: list[int], now_ms: int) -> dict[str, Any]:
    """How far behind the sync loop is.

    ``beat_age_ms``: since the newest sync tick started (the loop's heartbeat; with a 100 ms
    beat anything past a few hundred ms means the beat or the tick worker is stuck).
    ``apply_age_ms``: since the boss's last applied tick (grows while nobody hits; normal).
    ``interval_p50_ms``/``interval_p99_ms``: spacing of the recent beat ticks.
    """
    newest_first = [int(t) for t in tick_times_ms]
    gaps = [a - b for a, b in zip(newest_first, newest_first[1:])]
    last_tick = int(state.get("last_tick_ms") or 0)
    return {
        "beat_age_ms": max(0, now_ms - newest_first[0]) if newest_first else None,
        "apply_age_ms": max(0, now_ms - last_tick) if last_tick else None,
        "interval_p50_ms": _percentile(gaps, 0.5),
        "interval_p99_ms": _percentile(gaps, 0.99),
        "samples": len(gaps),
    }


def _saga_row(s: SagaRun) -> dict[str, Any]:
    return {
        "key": s.key,
        "kind": s.kind,
        # how a crash saga's session ended (crash, left, replaced, retired); else the kind
        "ending": session_end_kind(s.detail.get("reason")) if s.kind == SagaKind.CRASH else s.kind,
        "status": s.status,
        "shard": s.shard_key,
        "epoch": s.epoch,
        "policy": s.policy,
        "amount": s.amount,
        "attempts": s.attempts,
        "steps": [st.get("step", "") for st in s.steps],
        "started_at": s.started_at.isoformat() if s.started_at else None,
        "finished_at": s.finished_at.isoformat() if s.finished_at else None,
    }


def ops_latest_sagas(*, boss: BossEncounter, count: int = SAGAS_KEEP) -> list[dict[str, Any]]:
    """The newest sagas (victory and crash) of the boss's current fight."""
    return [
        _saga_row(s)
        for s in SagaRun.objects.filter(boss=boss, fight=boss.fight).order_by("-started_at", "-pk")[:count]
    ]


def _number(state: dict[str, str], name: str) -> int:
    return int(state.get(name) or 0)


def ops_state_message(*, boss: BossEncounter, state: dict[str, str]) -> messages.StateFrame:
    """The protocol's ``state`` message from a raw state hash (or the SQL record when absent)."""
    if state:
        parsed = authority.parse_state([state.get(f) for f in authority.STATE_FIELDS])
        if parsed is not None:
            return parsed.as_message()
    return messages.record_state_frame(record=boss)


def ops_snapshot(
    *, boss: BossEncounter, with_series: bool = False, clock: Clock | None = None
) -> messages.OpsFrame:
    """The ``ops`` message of ``/ws/ops/bosses/<slug>/``: everything the dashboard shows.

    ``with_series`` adds the HP-over-time series (sent once on connect; later points come
    from the state messages themselves). Heartbeat ages, DPS and tick lag are measured
    against ``clock`` (default: Redis ``TIME``).
    """
    client = get_redis()
    k = keys.BossKeys(boss.pk)
    raw, now_ms = _read_hashes(client, boss.pk, clock=clock)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(k.state)
    pipe.lrange(keys.TICK_TIMES, 0, TICK_SAMPLE)
    pipe.xrevrange(k.log, count=max(EVENTS_KEEP, HP_SERIES_KEEP if with_series else 0, 200))
    state, ticks, log = pipe.execute()
    entries = [_log_entry(i, f) for i, f in log]
    shards = ops_shard_rows(boss=boss, raw=raw, now_ms=now_ms, boss_status=state.get("status") or boss.status)
    return messages.ops_frame(
        boss=boss.slug,
        name=boss.name,
        server_ms=now_ms,
        state=ops_state_message(boss=boss, state=state),
        ledger={
            name: _number(state, name)
            for name in ("accepted", "applied", "mitigated", "overkill", "healed", "recovered", "discarded")
        },
        buffered=sum(int(v) for v in raw["buf"].values()),
        dps=ops_dps(entries=entries, now_ms=now_ms),
        tick=ops_tick_lag(state=state, tick_times_ms=[int(t) for t in ticks], now_ms=now_ms),
        shards=[asdict(r) for r in shards],
        health={
            h: sum(1 for r in shards if r.health == h)
            for h in (
                ShardHealth.OK,
                ShardHealth.LATE,
                ShardHealth.CRASHED,
                ShardHealth.LEFT,
                ShardHealth.IDLE,
                ShardHealth.RETIRED,
                ShardHealth.DONE,
            )
        },
        events=entries[:EVENTS_KEEP],
        sagas=ops_latest_sagas(boss=boss),
        config={
            "tick_interval_ms": boss.tick_interval_ms,
            "heartbeat_interval_ms": boss.heartbeat_interval_ms,
            "heartbeat_timeout_ms": boss.heartbeat_timeout_ms,
            "crash_policy": boss.crash_policy,
        },
        series=[[e["ts"], e["hp"], e["version"]] for e in reversed(entries[:HP_SERIES_KEEP])]
        if with_series
        else None,
    )


def ops_overview() -> list[dict[str, Any]]:
    """Every boss with its live state (for ``/ops/``), one pipelined read for all of them."""
    bosses = list(BossEncounter.objects.all())
    if not bosses:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for boss in bosses:
        pipe.hgetall(keys.BossKeys(boss.pk).state)
    states = pipe.execute()
    rows = []
    for boss, raw in zip(bosses, states):
        state = ops_state_message(boss=boss, state=raw)
        rows.append(
            {
                "boss": boss,
                "state": state,
                "has_authority": bool(raw),
                "hp_text": f"{state['hp']:,} / {state['max_hp']:,}",
            }
        )
    return rows


# --- the /ops/ overview: every boss in one read ---------------------------------------------

# What the overview reads of each boss's state hash.
OVERVIEW_STATE_FIELDS = (
    "hp",
    "max_hp",
    "version",
    "status",
    "phase_name",
    "applied",
    "last_tick_ms",
)


class OverviewTracker:
    """DPS of every boss from successive overview reads (no event-log scan per boss).

    Each read records ``(now_ms, applied)`` per boss; the DPS is the applied damage over the
    samples inside ``DPS_WINDOW_MS``. One tracker lives in each overview feed (one per ASGI
    process), so the figure is shared by every open overview page.
    """

    def __init__(self, window_ms: int = DPS_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._samples: dict[int, list[tuple[int, int]]] = {}

    def dps(self, boss_id: int, *, now_ms: int, applied: int) -> float | None:
        samples = self._samples.setdefault(boss_id, [])
        if samples and applied < samples[-1][1]:
            samples.clear()  # a reset boss: a new fight's counters
        samples.append((now_ms, applied))
        while len(samples) > 2 and samples[1][0] <= now_ms - self.window_ms:
            samples.pop(0)
        first_ms, first_applied = samples[0]
        if now_ms <= first_ms:
            return None
        return round((applied - first_applied) * 1000 / (now_ms - first_ms), 1)

    def forget_except(self, boss_ids: set[int]) -> None:
        for gone in set(self._samples) - boss_ids:
            del self._samples[gone]


def _overview_health(
    *,
    boss: BossEncounter,
    hb: dict[str, str],
    settled: dict[str, str],
    status: str,
    now_ms: int,
    shards: dict,
    ended: dict[tuple[int, str, int], str],
) -> dict[str, int]:
    """``{ok, late, crashed, left}`` of the shards that have a session on ``boss`` (idle ones
    are not counted), with the dashboard's rules (:func:`_shard_health`); ``ended``: how the
    fenced sessions ended (:func:`_session_endings`)."""
    sessions: dict[str, list[SessionRow]] = {}
    for sess in set(hb) | set(settled):
        shard_key, _, epoch = sess.partition(":")
        if not epoch.isdigit():
            continue
        age = max(0, now_ms - int(hb[sess])) if sess in hb else None
        fenced = settled.get(sess, "")
        ending = ended.get((boss.pk, shard_key, int(epoch)), SagaKind.CRASH) if fenced else ""
        sessions.setdefault(shard_key, []).append(
            SessionRow(epoch=int(epoch), heartbeat_age_ms=age, settled=fenced, ended=ending)
        )
    counts = {ShardHealth.OK: 0, ShardHealth.LATE: 0, ShardHealth.CRASHED: 0, ShardHealth.LEFT: 0}
    for key, rows in sessions.items():
        shard = shards.get(key)
        row = ShardRow(key=key, name=key, region="", status=shard.status if shard else "unknown", health="")
        row.sessions = rows
        health = _shard_health(row=row, heartbeat_interval_ms=boss.heartbeat_interval_ms, boss_status=status)
        if health in counts:
            counts[health] += 1
    return counts


def ops_overview_live(
    *, tracker: OverviewTracker | None = None, clock: Clock | None = None
) -> messages.OverviewFrame:
    """The ``overview`` message of ``/ws/ops/``: every boss's status, HP, DPS, shard health and
    tick lag, from three SQL queries and one Redis pipeline whatever the number of bosses.

    ``tick_lag_ms`` of a boss: how long its buffered damage has waited for a tick (time since
    its last applied tick while something is buffered; 0 when nothing waits). ``archive_problem``:
    why the archive of the boss stopped, from ``keys.ARCHIVE_PROBLEMS``. ``beat_age_ms``:
    since the newest sync tick started (the beat's heartbeat, as on the dashboard).
    """
    bosses = list(BossEncounter.objects.order_by("name", "pk"))
    shards = {s.key: s for s in Shard.objects.all()}
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.lindex(keys.TICK_TIMES, 0)
    pipe.hgetall(keys.ARCHIVE_PROBLEMS)
    for boss in bosses:
        k = keys.BossKeys(boss.pk)
        pipe.hmget(k.state, OVERVIEW_STATE_FIELDS)
        pipe.hvals(k.buf)
        pipe.hgetall(k.hb)
        pipe.hgetall(k.settled)
    (seconds, micros), newest_tick, archive_problems, *replies = pipe.execute()
    now_ms = clock.now_ms() if clock is not None else int(seconds) * 1000 + int(micros) // 1000
    # how the fenced sessions ended, for the bosses that have one (one query)
    ended = _session_endings([(b.pk, b.fight) for i, b in enumerate(bosses) if replies[4 * i + 3]])
    rows: list[messages.OverviewRow] = []
    for i, boss in enumerate(bosses):
        values, buf, hb, settled = replies[4 * i : 4 * i + 4]
        state = dict(zip(OVERVIEW_STATE_FIELDS, values))
        has_authority = state["version"] is not None
        status = state["status"] or boss.status
        max_hp = int(state["max_hp"] or boss.max_hp)
        hp = (
            int(state["hp"])
            if has_authority
            else (boss.final_hp if boss.final_hp is not None else boss.max_hp)
        )
        buffered = sum(int(v) for v in buf)
        last_tick = int(state["last_tick_ms"] or 0)
        applied = int(state["applied"] or 0)
        rows.append(
            {
                "slug": boss.slug,
                "name": boss.name,
                "status": status,
                "hp": hp,
                "max_hp": max_hp,
                "version": int(state["version"] or boss.final_version or 0),
                "phase": state["phase_name"] or "",
                "dps": tracker.dps(boss.pk, now_ms=now_ms, applied=applied) if tracker is not None else None,
                "buffered": buffered,
                "tick_lag_ms": (max(0, now_ms - last_tick) if last_tick else None) if buffered else 0,
                "shards": _overview_health(
                    boss=boss,
                    hb=hb,
                    settled=settled,
                    status=status,
                    now_ms=now_ms,
                    shards=shards,
                    ended=ended,
                ),
                # why the archive of this boss stopped (an event-log entry it cannot read), or None
                "archive_problem": archive_problems.get(str(boss.pk)),
            }
        )
    if tracker is not None:
        tracker.forget_except({b.pk for b in bosses})
    return messages.overview_frame(
        server_ms=now_ms,
        beat_age_ms=max(0, now_ms - int(newest_tick)) if newest_tick else None,
        bosses=rows,
    )
