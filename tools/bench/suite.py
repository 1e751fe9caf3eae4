"""The whole benchmark run behind ``manage.py bench``: sections, report dict, Markdown table.

Sections (each can be run alone with ``--only``):

- ``lockstorm``: delta-sync vs per-hit peers, 50 writers (tools/bench/authority.py);
- ``scaling``: authority operations/s as players grow 1x, 10x, 100x;
- ``ticks``: sync-tick interval and freshness with the real beat + worker (tools/bench/freshness.py);
- ``fanout``: viewers at 10 Hz over real sockets (tools/bench/fanout.py);
- ``e2e``: hosted-player attacks/s and SDK-aggregated hits/s one boss sustains over real
  sockets on 2 uvicorn processes, HP exact, per durability mode of the authority
  (tools/bench/endtoend.py, tools/simulator.py);
- ``bosses``: one sync tick pass over many live bosses, per-boss loop vs dirty pass, and the
  dirty pass on a 100 ms cadence under load (tools/bench/bosses.py);
- ``durability``: the ingest path under each durability mode, side by side: no persistence,
  AOF everysec, AOF always, replica (tools/bench/durability.py).
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from tools.bench.harness import short_row, table, titled

SCALING_PLAYERS = [10_000, 100_000, 1_000_000]
HITS_PER_PLAYER_S = 1.0
SECTIONS = ("lockstorm", "scaling", "ticks", "fanout", "e2e", "bosses", "durability", "ops")
BENCH_DBS = (13, 14, 15)  # authority, broker, fan-out: never a user's 0-7
MIN_BENCH_DB = 8
BOSS_ID_BASE = 900_000_000  # authority-only bosses (no SQL row) far above real ids

# Run sizes. "full" is what BENCHMARKS.md reports; "quick" runs every row in under a minute
# (noisier); "smoke" runs every row with tiny loads in seconds: it checks that the bench
# works end to end (what the test suite runs) and measures nothing worth reporting.
MODES = ("full", "quick", "smoke")
DURATIONS = {
    "full": {
        "lockstorm": 8.0,
        "scaling": 5.0,
        "ticks": 20.0,
        "fanout": 10.0,
        "e2e": 15.0,
        "bosses": 10.0,
        "durability": 5.0,
    },
    "quick": {
        "lockstorm": 1.0,
        "scaling": 1.0,
        "ticks": 3.0,
        "fanout": 1.0,
        "e2e": 3.0,
        "bosses": 3.0,
        "durability": 1.0,
    },
    "smoke": {
        "lockstorm": 0.3,
        "scaling": 0.3,
        "ticks": 1.5,
        "fanout": 0.5,
        "e2e": 1.0,
        "bosses": 1.0,
        "durability": 0.3,
    },
}
FANOUT_VIEWERS = {"full": [500, 1_000, 2_000], "quick": [500, 1_000, 2_000], "smoke": [20, 40, 60]}
TARGETS = {
    "ratio_to_best_peer": 100.0,
    "tick_p99_ms": 150.0,
    "freshness_p99_ms": 300.0,
    "hosted_attacks_per_s": 5_000.0,
    "hosted_attacks_per_s_scenario": 20_000.0,
    "sdk_hits_per_s": 1_000_000.0,
}


# --- environment (parent process) --------------------------------------------------------


def bench_environment(*, stack, redis_url: str, run_dir: Path) -> dict[str, str]:
    """Pick the Redis (start one if needed), flush the bench dbs, migrate the bench database.

    Returns the environment of the bench process (REDIS_URL/BROKER_URL/CHANNELS_URL on dbs
    13-15, DATABASE_URL of the bench SQLite file, BENCH_POSTGRES_URL) plus ``_how``.
    """
    import redis

    from tools.stack import url_with_db

    choice = stack.ensure_redis(redis_url)
    urls = [url_with_db(choice.url, db) for db in BENCH_DBS]
    for url in urls:
        db = int(url.rsplit("/", 1)[1])
        if db < MIN_BENCH_DB:  # belt and braces: the bench flushes these
            raise ValueError(f"refusing to flush {url}")
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    db_path = run_dir / "bench.sqlite3"
    env = {
        "REDIS_URL": urls[0],
        "BROKER_URL": urls[1],
        "CHANNELS_URL": urls[2],
        "DATABASE_URL": f"sqlite:///{db_path.resolve()}",
        "TEST_DB_NAME": "",
        "SYNC_TICK_INTERVAL_MS": "100",
        "LOG_LEVEL": "WARNING",
        # the load generator's players connect with ?player=<id> (simulator mode, bench only)
        "LIVEOPS_SIMULATOR_PLAYERS": "1",
    }
    parent_db = os.environ.get("DATABASE_URL", "")
    env["BENCH_POSTGRES_URL"] = os.environ.get("BENCH_POSTGRES_URL") or (
        parent_db if parent_db.startswith(("postgres://", "postgresql://")) else ""
    )
    subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "migrate", "--noinput"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    env["_how"] = choice.how
    return env


# --- the run (child process) ----------------------------------------------------------------


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python, Redis server version, load average at start."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from core.redis import get_redis

    info = get_redis().info("server")
    server = (
        info.get("valkey_version") and f"Valkey {info['valkey_version']}"
    ) or f"Redis {info.get('redis_version')}"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "redis": server,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def _section(report: dict, name: str, progress: Callable[[str], None], fn: Callable[[], Any]) -> None:
    started = time.monotonic()
    progress(f"{name} ...")
    try:
        report[name] = fn()
    except Exception as exc:  # a broken section is reported, the others still run
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
    report.setdefault("section_seconds", {})[name] = round(time.monotonic() - started, 1)


def bench_run(*, mode: str, sections: list[str], progress: Callable[[str], None]) -> dict[str, Any]:
    """Run ``sections`` at ``mode``'s size (:data:`MODES`) and return the report (see
    :func:`report_markdown`)."""
    from tools.stack import Stack

    if mode not in MODES:
        raise ValueError(f"unknown bench mode {mode!r}; choose from {list(MODES)}")
    d = DURATIONS[mode]
    quick = mode != "full"
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": "python manage.py bench" + ("" if mode == "full" else f" --{mode}"),
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": mode,
        "quick": quick,
        "machine": machine(),
        "targets": TARGETS,
    }
    redis_url = settings.REDIS_URL
    if "lockstorm" in sections:
        _section(report, "lockstorm", progress, lambda: _lockstorm(redis_url, d["lockstorm"], progress))
    if "scaling" in sections:
        _section(report, "scaling", progress, lambda: _scaling(d["scaling"]))
    if "bosses" in sections:
        _section(report, "bosses", progress, lambda: _bosses(mode, d["bosses"], progress))
    if "durability" in sections:
        _section(report, "durability", progress, lambda: _durability(d["durability"], progress))
    if "ops" in sections:  # operator sockets: per-socket polling vs the shared feed (tools/bench/ops.py)
        _section(report, "ops", progress, lambda: _ops(mode, progress))
    needs_stack = {"ticks", "fanout", "e2e"} & set(sections)
    if needs_stack:
        with Stack(run_dir=Path(settings.BASE_DIR) / ".bench" / "run") as stack:
            progress("starting Celery worker and beat")
            stack.start_worker(queues="ticks,sagas", concurrency=2)
            stack.start_beat()
            if "ticks" in sections:
                _section(report, "ticks", progress, lambda: _ticks(redis_url, d["ticks"]))
            if "fanout" in sections:
                _section(
                    report,
                    "fanout",
                    progress,
                    lambda: _fanout(quick, d["fanout"], FANOUT_VIEWERS[mode], progress),
                )
            if "e2e" in sections:
                _section(report, "e2e", progress, lambda: _e2e(stack, mode, d["e2e"], progress))
    report["total_seconds"] = round(time.monotonic() - started, 1)
    report["summary"] = summarize(report)
    return report


def _ops(mode: str, progress) -> dict[str, Any]:
    from tools.bench.ops import ops_bench

    return ops_bench(mode=mode, run_dir=Path(settings.BASE_DIR) / ".bench", progress=progress)


def _durability(seconds: float, progress) -> dict[str, Any]:
    from tools.bench.durability import durability_rows

    return durability_rows(seconds=seconds, run_dir=Path(settings.BASE_DIR) / ".bench", progress=progress)


def _bosses(mode: str, seconds: float, progress) -> dict[str, Any]:
    from tools.bench.bosses import bosses_bench

    return bosses_bench(
        mode=mode,
        seconds=seconds,
        interval_ms=settings.SYNC_TICK_INTERVAL_MS,
        id_base=BOSS_ID_BASE + 10_000,
        progress=progress,
        run_dir=Path(settings.BASE_DIR) / ".bench" / "run",
    )


def _lockstorm(redis_url: str, seconds: float, progress) -> dict[str, Any]:
    from tools.bench import authority

    async def go():
        pg = await authority.postgres_reachable(
            authority.postgres_url_candidates(os.environ.get("BENCH_POSTGRES_URL") or None)
        )
        rows = await authority.lock_storm(
            redis_url=redis_url, pg_url=pg, boss_id=BOSS_ID_BASE + 1, seconds=seconds, progress=progress
        )
        rows, best = authority.with_ratios(rows)
        return {
            "rows": [r.as_dict() for r in rows],
            "best_peer": best,
            "postgres": _redact(pg) if pg else "not reachable",
        }

    return asyncio.run(go())


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port or 5432}{p.path}"


def _scaling(seconds: float) -> dict[str, Any]:
    from tools.bench import authority

    rows = asyncio.run(
        authority.authority_scaling(
            boss_id=BOSS_ID_BASE + 100,
            seconds=seconds,
            players=SCALING_PLAYERS,
            hits_per_player_s=HITS_PER_PLAYER_S,
        )
    )
    ops = [r.authority_ops_per_s for r in rows]
    # "flat": 100x the players must not mean more authority work (at most +20 %, noise)
    return {
        "rows": [r.as_dict() for r in rows],
        "hits_per_player_s": HITS_PER_PLAYER_S,
        "shards": authority.WRITERS,
        "ops_growth": round(ops[-1] / ops[0], 3) if ops and ops[0] else None,
    }


def _ticks(redis_url: str, seconds: float) -> dict[str, Any]:
    from tools.bench.freshness import tick_and_freshness

    return asyncio.run(tick_and_freshness(boss_id=BOSS_ID_BASE + 200, redis_url=redis_url, seconds=seconds))


def _fanout(quick: bool, seconds: float, viewers: list[int], progress) -> dict[str, Any]:
    try:
        from tools.bench import fanout
    except ImportError as exc:
        return {"error": f"tools/bench/fanout.py is not available: {exc}"}
    # quick: every viewer count on this project's design only (the stock layers need ~10 s
    # each at 2,000 viewers); the full run compares all three layers at every count.
    layers = ("hub",) if quick else fanout.LAYERS
    out = fanout.bench_rows(quick=False, seconds=seconds, viewers=viewers, progress=progress, layers=layers)
    if quick:
        out["note"] = (
            out.get("note", "") + " Quick run: this project's hub only; the full run adds stock "
            "RedisChannelLayer and RedisPubSubChannelLayer rows."
        ).strip()
    return out


def _e2e(stack, mode: str, seconds: float, progress) -> dict[str, Any]:
    from tools.bench import endtoend

    return endtoend.e2e_run(stack=stack, mode=mode, seconds=seconds, progress=progress)


# --- summary and Markdown ------------------------------------------------------------------


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Targets met or missed, with by how much."""
    out: dict[str, Any] = {}
    ls = report.get("lockstorm", {})
    rows = ls.get("rows", [])
    ds = next((r for r in rows if r["approach"].startswith("delta-sync")), None)
    if ds:
        ratio = ds["extra"].get("ratio_to_best_peer")
        out["ratio_to_best_peer"] = {
            "value": ratio,
            "target": TARGETS["ratio_to_best_peer"],
            "met": bool(ratio and ratio >= TARGETS["ratio_to_best_peer"]),
        }
    sc = report.get("scaling", {})
    if sc.get("ops_growth"):
        out["authority_ops_growth_100x_players"] = {
            "value": sc["ops_growth"],
            "target": "<= 1.2 (flat)",
            "met": sc["ops_growth"] <= 1.2,
        }
    tk = report.get("ticks", {})
    if "tick_interval" in tk:
        v = tk["tick_interval"]["p99_ms"]
        out["tick_p99_ms"] = {
            "value": v,
            "target": TARGETS["tick_p99_ms"],
            "met": v <= TARGETS["tick_p99_ms"],
        }
        v = tk["freshness"]["p99_ms"]
        out["freshness_p99_ms"] = {
            "value": v,
            "target": TARGETS["freshness_p99_ms"],
            "met": v <= TARGETS["freshness_p99_ms"],
        }
    e2e = report.get("e2e", {})
    for name, key in (("hosted", "hosted_attacks_per_s"), ("sdk", "sdk_hits_per_s")):
        row = e2e.get(name)
        if isinstance(row, dict) and "rate" in row:
            out[key] = {
                "value": row["rate"],
                "target": TARGETS[key],
                "met": row["rate"] >= TARGETS[key] and bool(row.get("hp_exact")),
            }
    return out


def _n(v: Any, digits: int = 0) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (int, float)):
        if digits:
            return f"{v:,.{digits}f}"
        return f"{v:,.0f}" if abs(v) >= 10 or v == 0 else f"{v:.2g}"
    return str(v)


def _ratio(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}x" if v >= 100 else f"{v:.3g}x"


def _ms(v: Any) -> str:
    if v is None:
        return "-"
    if v < 0.01:
        return f"{v * 1000:.2f} us"
    return f"{v:,.1f} ms" if v < 1000 else f"{v / 1000:,.2f} s"


def report_markdown(report: dict[str, Any]) -> str:
    """The report as the Markdown tables kept in BENCHMARKS.md."""
    from tools.bench.durability import durability_lines
    from tools.bench.ops import ops_lines

    lines = _header_lines(report)
    lines += _lockstorm_lines(report.get("lockstorm"))
    lines += _scaling_lines(report.get("scaling"))
    lines += _bosses_markdown(report.get("bosses"))
    lines += ops_lines(report.get("ops"))
    if report.get("durability"):
        lines += ["### Durability modes: the ingest path (tools/bench/durability.py)", ""]
        lines += durability_lines(report["durability"])
    lines += _ticks_lines(report.get("ticks"))
    if report.get("fanout"):
        lines += ["### Fan-out: viewers at 10 states/s (one uvicorn process)", ""]
        lines += _fanout_lines(report["fanout"])
    if report.get("e2e"):
        lines += [
            "### End to end over real sockets (2 uvicorn processes + Celery worker/beat + simulator)",
            "",
        ]
        lines += _e2e_lines(report["e2e"])
    if report.get("section_seconds"):
        lines += [
            "Section times (s): " + ", ".join(f"{k} {v}" for k, v in report["section_seconds"].items()),
            "",
        ]
    lines += _targets_lines(report.get("summary") or {})
    return "\n".join(lines) + "\n"


def _header_lines(report: dict[str, Any]) -> list[str]:
    m = report.get("machine", {})
    lines = [
        f"Command: `{report.get('command')}` — started {report.get('started_utc')}, "
        f"took {report.get('total_seconds')} s.",
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('redis')}, Python {m.get('python')}, "
        f"load average at start {m.get('loadavg_at_start')}.",
        "",
    ]
    if report.get("mode") == "smoke":
        lines += [
            "**Smoke run: tiny loads that check the bench works. These figures measure nothing; "
            "compare runs of `bench` or `bench --quick` only.**",
            "",
        ]
    return lines


def _lockstorm_lines(ls: dict[str, Any] | None) -> list[str]:
    lines, ok = titled("### Lock storm: 50 concurrent writers on one boss", ls)
    if not ok:
        return lines
    rows = [
        short_row([r["approach"], r["skipped"]], 8)
        if r["skipped"]
        else f"| {r['approach']} | {_n(r['hits_per_s'])} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
        f"{r['ops_per_hit']:.3g} | {r['retries_per_hit']:.3g} | {_n(r['hp_exact'])} | "
        f"{_ratio(r['extra'].get('ratio_to_best_peer'))} |"
        for r in ls["rows"]
    ]
    header = "| approach | hits/s | p50 per hit | p99 per hit | authority ops/hit | retries/hit | HP exact | x best peer |"
    return [
        *lines,
        *table(header, rows),
        f"Best per-hit peer: {ls['best_peer']}. PostgreSQL: {ls['postgres']}.",
        "",
    ]


def _scaling_lines(sc: dict[str, Any] | None) -> list[str]:
    per_player = (sc or {}).get("hits_per_player_s", "?")
    lines, ok = titled(
        f"### Authority load as players grow (delta-sync, 50 shards, {per_player} hit/s per player)", sc
    )
    if not ok:
        return lines
    rows = [
        f"| {_n(r['players'])} | {_n(r['offered_hits_per_s'])} | {_n(r['hits_per_s'])} | "
        f"{_n(r['authority_ops_per_s'])} | {r['ops_per_hit']:.3g} | {_n(r['hp_exact'])} |"
        for r in sc["rows"]
    ]
    header = "| players | offered hits/s | sustained hits/s | authority ops/s | ops/hit | HP exact |"
    return [
        *lines,
        *table(header, rows),
        f"Authority ops/s at 100x the players / at 1x: {sc['ops_growth']} (one ingest per "
        "shard per 100 ms shard tick + one sync tick per 100 ms, whatever the players do).",
        "",
    ]


def _ticks_lines(tk: dict[str, Any] | None) -> list[str]:
    lines, ok = titled("### Sync tick (real Celery beat + worker, 100 ms) and freshness", tk)
    if not ok:
        return lines
    ti, fr = tk["tick_interval"], tk["freshness"]
    rows = [
        f"| sync-tick interval | {ti['n']} | {_ms(ti['p50_ms'])} | {_ms(ti['p99_ms'])} | {_ms(ti['max_ms'])} |",
        f"| freshness (hit -> first state including it) | {fr['n']} | {_ms(fr['p50_ms'])} | "
        f"{_ms(fr['p99_ms'])} | {_ms(fr['max_ms'])} |",
    ]
    return [
        *lines,
        *table("| measure | n | p50 | p99 | max |", rows),
        f"Load: {_n(tk['offered_hits_per_s'])} hits/s on 20 SDK-like shards (100 ms shard tick), "
        f"HP exact: {_n(tk['hp_exact'])}; samples never seen applied: {tk['freshness_missing']}.",
        "",
    ]


def _targets_lines(summary: dict[str, Any]) -> list[str]:
    if not summary:
        return []
    rows = [
        f"| {name} | {_n(s['value'], 1) if isinstance(s['value'], float) else _n(s['value'])} | "
        f"{s['target']} | {_n(s['met'])} |"
        for name, s in summary.items()
    ]
    return ["### Targets", "", *table("| target | measured | goal | met |", rows)]


FANOUT_LAYER_NAMES = {
    "core": "stock RedisChannelLayer",
    "pubsub": "stock RedisPubSubChannelLayer",
    "hub": "this project (per-process hub)",
}


def _fanout_row(r: dict[str, Any]) -> str:
    layer = FANOUT_LAYER_NAMES.get(r.get("layer", ""), r.get("layer", ""))
    if r.get("skipped") or r.get("error"):
        return f"| {layer} | | {_n(r.get('viewers'))} | {r.get('skipped') or r.get('error')} | | | | |"
    return (
        f"| {layer} | {r.get('workers', '')} | {_n(r.get('viewers'))} | {_n(r.get('delivered'))} / "
        f"{_n(r.get('expected'))} | {_n(r.get('delivered_pct'), 1)} | {_ms(r.get('p50_lag_ms'))} | "
        f"{_ms(r.get('p99_lag_ms'))} | {_n(r.get('ended_on_final'))} / {_n(r.get('viewers'))} |"
    )


def _fanout_lines(fo: dict[str, Any]) -> list[str]:
    if "error" in fo:
        return [f"error: {fo['error']}", ""]
    header = (
        "| layer | uvicorn processes | viewers | delivered / expected | delivered % | p50 lag | p99 lag | "
        "viewers ended on final version |"
    )
    out = table(header, [_fanout_row(r) for r in fo.get("rows", [])])
    return out + ([fo["note"], ""] if fo.get("note") else [])


def _e2e_row(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return short_row([name, f"error: {r['error']}"], 8)
    return (
        f"| {r.get('label', name)} | {_n(r.get('sent_per_s'))} | {_n(r.get('acked_per_s'))} | "
        f"{_n(r.get('rate'))} | {_n(r.get('hp_exact'))} | {_ms(r.get('freshness_p50_ms'))} / "
        f"{_ms(r.get('freshness_p99_ms'))} | {_ms(r.get('tick_p99_ms'))} | {_n(r.get('states_per_s'))} | "
        f"{_us(r.get('server_cpu_us_per_unit'))} / {_us(r.get('redis_cpu_us_per_unit'))} |"
    )


def _e2e_lines(e2e: dict[str, Any]) -> list[str]:
    if "error" in e2e:
        return [f"error: {e2e['error']}", ""]
    header = (
        "| scenario | sent/s | acked/s | applied/s (rate) | HP exact (verify_boss) | freshness p50 / p99 | "
        "tick p99 | states/s received | CPU per unit: uvicorn / Redis |"
    )
    names = ("hosted", "sdk", "hosted_ceiling", "hosted_ceiling_process_limit")
    out = table(header, [_e2e_row(n, e2e[n]) for n in names if isinstance(e2e.get(n), dict)])
    if e2e.get("note"):
        out += [e2e["note"], ""]
    if e2e.get("modes"):
        out += _e2e_modes_lines(e2e["modes"])
    return out


def _us(v: Any) -> str:
    return "-" if v is None else f"{v:,.2f} us"


def _x(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _e2e_mode_row(m: dict[str, Any]) -> str:
    if "error" in m:
        return short_row([str(m.get("label")), f"error: {m['error']}"], 10)
    h, d = m.get("hosted") or {}, m.get("sdk") or {}
    return (
        f"| {m.get('label')} | {m.get('server', '-')} | {h.get('error') or _n(h.get('rate'))} | "
        f"{_x(h.get('x_rate'))} | {d.get('error') or _n(d.get('rate'))} | {_x(d.get('x_rate'))} | "
        f"{_ms(h.get('freshness_p99_ms'))} | {_ms(d.get('freshness_p99_ms'))} | "
        f"{_x(d.get('x_freshness_p99'))} | {_n(h.get('hp_exact'))} / {_n(d.get('hp_exact'))} |"
    )


def _e2e_modes_lines(modes: dict[str, Any]) -> list[str]:
    """The durability modes side by side (tools/bench/endtoend.py DURABILITY_MODES)."""
    header = (
        "| mode | server | hosted attacks/s | x none | SDK hits/s | x none | hosted freshness p99 | "
        "SDK freshness p99 | x none (SDK p99) | HP exact (hosted / SDK) |"
    )
    return [
        "#### End to end per durability mode of the authority (2 uvicorn processes each)",
        "",
        *table(header, [_e2e_mode_row(m) for m in modes.values()]),
    ]


def _bosses_markdown(bs: dict[str, Any] | None) -> list[str]:
    lines, ok = titled("### Many live bosses: one sync tick pass (tools/bench/bosses.py)", bs)
    if not ok:
        return lines
    passes = [
        f"| {_n(r['active'])} | {_n(r['idle'])} | {r['rounds']} | {_ms(r['per_boss_p50_ms'])} / "
        f"{_ms(r['per_boss_p99_ms'])} | {_ms(r['dirty_p50_ms'])} / {_ms(r['dirty_p99_ms'])} | "
        f"{_ratio(r['ratio_p50'])} |"
        for r in bs["passes"]
    ]
    cadence = [
        f"| {_n(r['active'])} | {_n(r['idle'])} | {r['ticks']} | {_ms(r['pass_p99_ms'])} | "
        f"{_ms(r['interval_p99_ms'])} | {_ms(r['freshness_p50_ms'])} / {_ms(r['freshness_p99_ms'])} |"
        for r in bs["cadence"]
    ]
    lines += table(
        "| active bosses | idle live bosses | rounds | per-boss loop p50 / p99 | dirty pass p50 / p99 | x faster (p50) |",
        passes,
    )
    lines += [
        "Each pass after one delta per active boss; both implementations alternate on the same bosses "
        "(rounds of each: fewer than asked when the per-boss loop used up the scenario's time budget).",
        "",
    ]
    lines += table(
        "| active bosses | idle live bosses | ticks | pass p99 | tick interval p99 | freshness p50 / p99 |",
        cadence,
    )
    lines += [
        "Dirty pass every 100 ms in one process while another process sends one delta per active "
        "boss per interval; freshness: a probe's ingest ack to the state message on its subscriber.",
        "",
    ]
    return lines + _cluster_lines(bs.get("cluster"))


def _cluster_lines(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    rows = [
        f"| one Redis | {_ms(c['single_p50_ms'])} | {_n(c['single_boss_ticks_per_s'])} | "
        f"{_n(c['single_boss_ticks_per_s'])} |",
        f"| Redis Cluster, {c['cluster_masters']} masters | {_ms(c['cluster_p50_ms'])} | "
        f"{_n(c['cluster_boss_ticks_per_s'])} | {_n(c['cluster_boss_ticks_per_s_per_master'])} |",
    ]
    return [
        *table(f"| {_n(c['active'])} bosses damaged per pass | pass p50 | boss-ticks/s | per master |", rows),
        f"One run, the same pass and bosses; one Redis / cluster pass time: {c['ratio']}x.",
        "",
    ]
