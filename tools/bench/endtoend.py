"""End to end over real sockets: what one boss sustains, with exact HP.

A real uvicorn process serves the WebSockets; the Celery worker and beat of the bench tick;
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
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from tools.bench.authority import percentile

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
    since_ms = int(time.time() * 1000)
    stats = run_loop(Fight(plan).run())
    cpu_server, cpu_self = _cpu_seconds(server_pid) - cpu_server0, _self_cpu() - cpu_self0
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
    }


# Hosted players offered per run size (tools/bench/suite.py MODES).
HOSTED_PLAYERS = {"full": 300, "quick": 200, "smoke": 20}


def e2e_run(*, stack, mode: str, seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Both scenarios on one uvicorn process (``full`` adds a 2-process hosted row); returns
    ``{"hosted": row, "sdk": row, "note": ...}``."""
    from tools.simsetup import sim_boss_prepare, sim_shards_ensure
    from tools.stack import free_port

    port = free_port()
    asgi = stack.start_asgi(port=port)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"asgi_processes": 1}

    # offered beyond what one process serves (closed loop: at most 4 unanswered attacks per
    # player), so the acked rate is the capacity, not the offer
    quick = mode != "full"
    players = HOSTED_PLAYERS[mode]
    attack_rate = 40.0
    progress(f"e2e: {players} hosted players x {attack_rate:g} attacks/s for {seconds:g} s")
    try:
        sim_boss_prepare(
            slug="bench-hosted", name="Bench hosted", max_hp=E2E_HP, attacks_per_second=PLAYER_RATE_LIMIT
        )
        specs = sim_shards_ensure(prefix="benchh", hosted=4, sdk=0)
        out["hosted"] = _scenario(
            url=url,
            slug="bench-hosted",
            specs=specs,
            players=players,
            attack_rate=attack_rate,
            sdk_rate=None,
            seconds=seconds,
            server_pid=asgi.pid,
            settle_s=10.0 if quick else 30.0,
            label=f"hosted players ({players} x {attack_rate:g}/s offered, 4 shards)",
        )
    except Exception as exc:
        out["hosted"] = {"error": f"{type(exc).__name__}: {exc}"}

    servers = 4
    progress(f"e2e: {servers} SDK game servers, hits as fast as they can, for {seconds:g} s")
    try:
        sim_boss_prepare(slug="bench-sdk", name="Bench SDK", max_hp=E2E_HP)
        specs = sim_shards_ensure(prefix="benchs", hosted=0, sdk=servers)
        out["sdk"] = _scenario(
            url=url,
            slug="bench-sdk",
            specs=specs,
            players=0,
            attack_rate=1.0,
            sdk_rate=None,
            seconds=seconds,
            server_pid=asgi.pid,
            sdk_processes=SDK_PROCESSES,
            settle_s=10.0 if quick else 30.0,
            label=f"SDK game servers ({servers} on the reference SDK in {SDK_PROCESSES} "
            "processes, 1,000 players each, 100 ms shard tick)",
        )
    except Exception as exc:
        out["sdk"] = {"error": f"{type(exc).__name__}: {exc}"}
    if not quick:  # what a second ASGI process buys on this machine (its own hosted-shard sessions)
        asgi.stop()
        stack.procs.remove(asgi)
        port = free_port()
        asgi2 = stack.start_asgi(port=port, workers=2)
        time.sleep(1.0)  # both workers imported and accepting
        progress(f"e2e: {players} hosted players on 2 uvicorn processes for {seconds:g} s")
        try:
            sim_boss_prepare(
                slug="bench-hosted2",
                name="Bench hosted 2",
                max_hp=E2E_HP,
                attacks_per_second=PLAYER_RATE_LIMIT,
            )
            specs = sim_shards_ensure(prefix="benchh2", hosted=4, sdk=0)
            out["hosted_2proc"] = _scenario(
                url=f"http://127.0.0.1:{port}",
                slug="bench-hosted2",
                specs=specs,
                players=players,
                attack_rate=attack_rate,
                sdk_rate=None,
                seconds=seconds,
                server_pid=asgi2.pid,
                label=f"hosted players, 2 uvicorn processes ({players} x {attack_rate:g}/s offered; "
                "freshness approximate)",
            )
        except Exception as exc:
            out["hosted_2proc"] = {"error": f"{type(exc).__name__}: {exc}"}
    h = out.get("hosted", {})
    if "server_cpu_us_per_unit" in h and h.get("server_cpu_us_per_unit"):
        per = h["server_cpu_us_per_unit"] + (h.get("loadgen_cpu_us_per_unit") or 0)
        out["note"] = (
            f"Hosted attacks cost {h['server_cpu_us_per_unit']:.0f} us of server CPU each (uvicorn process) "
            f"plus {h.get('loadgen_cpu_us_per_unit') or 0:.0f} us in the load generator on the same 2 cores. "
            f"20,000 attacks/s would need about {20_000 * h['server_cpu_us_per_unit'] / 1e6:.1f} cores of "
            f"ASGI processes (uvicorn --workers N; each process runs its own hosted-shard session) plus "
            f"{20_000 * (h.get('loadgen_cpu_us_per_unit') or 0) / 1e6:.1f} cores of players elsewhere "
            f"({20_000 * per / 1e6:.1f} cores in all on one box)."
        )
    return out
