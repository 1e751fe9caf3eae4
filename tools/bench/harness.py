"""What every benchmark, the demo and the simulator share: percentiles, CPU, the event loop,
the servers they start and the shard writer they ingest with.

- :func:`percentile` (nearest rank) and :func:`summarize_ms`: the one way a figure is taken
  from samples (docs/benchmarks.md, "Percentiles");
- :func:`group_cpu_seconds`, :func:`own_cpu_seconds`, :func:`redis_cpu_seconds`: CPU time of a
  server's process group (Linux ``/proc``), of this process, of a Redis server;
- :func:`run_loop`: the load generator's event loop (uvloop when installed);
- :func:`start_redis`, :func:`start_primary_replica`, :func:`start_cluster`,
  :func:`start_asgi`: servers, all children of a :class:`tools.stack.Stack` (their own
  process group, killed with the parent, stopped with the stack);
- :class:`ShardBuffer`: a shard's in-memory buffer that sends what it holds through the
  production async ingest, :func:`shards.services.adelta_ingest`;
- :func:`table`, :func:`short_row`, :func:`titled`: the Markdown of every section's table.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from tools.stack import ManagedProcess, Stack

START_TIMEOUT_S = 30.0
BENCH_MAX_HP = 10**15


# --- figures ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile: the smallest sample with at least ``p`` % of the
    samples at or below it (0.0 for no samples). Always a measured value, never interpolated."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def summarize_ms(values: Sequence[float], *, scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    """``n``, ``p50_ms``, ``p99_ms`` and ``max_ms`` of ``values`` times ``scale`` (1000 for seconds)."""
    vals = [v * scale for v in values]
    return {
        "n": len(vals),
        "p50_ms": round(percentile(vals, 50), digits),
        "p99_ms": round(percentile(vals, 99), digits),
        "max_ms": round(max(vals), digits) if vals else 0.0,
    }


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (Linux /proc).

    A :class:`tools.stack.ManagedProcess` leads its own group, so its pid counts it and its
    children (uvicorn's workers).
    """
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def group_rss_kib(pgid: int) -> int:
    """Resident memory (KiB) of every live process in process group ``pgid`` (Linux /proc):
    a uvicorn parent and its workers, for the memory one held socket costs."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (the load generator)."""
    t = os.times()
    return t.user + t.system


def redis_cpu_seconds(client: Any) -> float:
    """CPU seconds a Redis server has used (INFO cpu: main thread and all)."""
    info = client.info("cpu")
    return float(info.get("used_cpu_sys", 0)) + float(info.get("used_cpu_user", 0))


def run_loop(coro):
    """Run ``coro`` on uvloop when installed (a uvicorn[standard] dependency), else asyncio.

    The load generator shares the machine with the servers it measures: a cheaper event loop
    leaves more CPU to them.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- servers ---------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A Redis server the harness started (a child of a :class:`tools.stack.Stack`)."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, stack: Stack) -> None:
        stack.stop_one(self.process)


def start_redis(
    stack: Stack, name: str, binary: str, *, data_dir: Path, extra: tuple[str, ...] = ()
) -> RedisServer:
    """A fresh server (``data_dir`` wiped first) on a free port; returns once it answers PING."""
    shutil.rmtree(data_dir, ignore_errors=True)
    proc, port = stack.start_redis(name, binary, data_dir=data_dir, extra=extra)
    return RedisServer(proc, port)


def start_primary_replica(stack: Stack, name: str, binary: str, *, data_dir: Path) -> list[RedisServer]:
    """A primary and one replica of it (both AOF always); returns once the replica is online."""
    primary = start_redis(
        stack,
        f"{name}-primary",
        binary,
        data_dir=data_dir / "primary",
        extra=("--repl-diskless-sync-delay", "0"),
    )
    replica = start_redis(
        stack,
        f"{name}-replica",
        binary,
        data_dir=data_dir / "replica",
        extra=("--replicaof", "127.0.0.1", str(primary.port)),
    )
    client = redis.Redis(port=primary.port, decode_responses=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while client.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the replica never came online")
            time.sleep(0.02)
    finally:
        client.close()
    return [primary, replica]


def start_cluster(stack: Stack, name: str, binary: str, *, run_dir: Path, masters: int = 3) -> list[int]:
    """A Redis Cluster of ``masters`` masters (AOF on, loopback; data under
    ``run_dir/<name>-<n>``, wiped first: a node keeps its membership in nodes.conf); returns
    the node ports once every node reports ``cluster_state:ok``."""
    from tools.cluster import CLUSTER_NODE_OPTIONS, cluster_create, cluster_port

    ports = []
    for n in range(masters):
        data = run_dir / f"{name}-{n}"
        shutil.rmtree(data, ignore_errors=True)
        port = cluster_port()
        stack.start_redis(f"{name}-{n}", binary, data_dir=data, extra=CLUSTER_NODE_OPTIONS, port=port)
        ports.append(port)
    cluster_create(ports)
    return ports


def server_name(url: str) -> str:
    """``Redis 7.0.15`` or ``Valkey 8.1.1``: what answers at ``url``."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        info = client.info("server")
    finally:
        client.close()
    if info.get("valkey_version"):
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


def start_asgi(
    stack: Stack,
    *,
    workers: int = 1,
    app: str = "liveops.asgi:application",
    flags: Sequence[str] | None = None,
    probe: str = "/readyz",
    **env: str,
) -> tuple[ManagedProcess, str]:
    """uvicorn on a free port (:meth:`tools.stack.Stack.start_asgi`); returns it and its base
    URL once ``probe`` answers over HTTP (any status: the app is serving) and, with several
    workers, once they all had time to import."""
    from tools.stack import free_port

    port = free_port()
    proc = stack.start_asgi(port=port, workers=workers, app=app, flags=flags, **env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S * 2
    while not _answers(base + probe):
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not serve {probe}:\n{proc.output()[-2000:]}")
        time.sleep(0.1)
    if workers > 1:
        time.sleep(1.0)  # let every worker finish importing before the load arrives
    return proc, base


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except urllib.error.HTTPError:
        return True  # an error status is an answer: the app serves
    except OSError:
        return False
    return True


def point_authority_at(url: str, *, mode: str) -> None:
    """This process's authority on ``url`` with durability ``mode`` (fresh clients, no
    remembered shard epochs)."""
    from django.conf import settings

    from core.redis import reset_clients
    from shards import services

    settings.REDIS_URL = url
    settings.AUTHORITY_DURABILITY = mode
    reset_clients()
    services._known_epochs.clear()


# --- the shard writer ---------------------------------------------------------------------------


async def boss_seed(boss_id: int, *, max_hp: int = BENCH_MAX_HP, shard_keys: Sequence[str] = ()) -> None:
    """An authority-only boss (no SQL row) on the authority's Redis, fresh, with ``shard_keys``
    registered at epoch 1."""
    from core import authority
    from core.keys import SHARD_EPOCHS, BossKeys
    from core.redis import get_async_redis

    r = get_async_redis()
    await r.delete(*BossKeys(boss_id).all())
    await authority.arun(r, boss_seed_call(boss_id, max_hp=max_hp))
    if shard_keys:
        await r.hset(SHARD_EPOCHS, mapping=dict.fromkeys(shard_keys, 1))


def live_bosses_create(
    *, count: int, slug_prefix: str, name_prefix: str, max_hp: int, min_tick_ms: int, batch: int = 500
) -> list:
    """``count`` live bosses without phases, as ``boss_go_live`` leaves them: rows made in one
    bulk insert, each seeded in Redis with its incarnation (``batch`` scripts a round trip) and
    in the live set. Slugs ``<slug_prefix><i>``. Raises when a seed is refused."""
    import uuid

    from bosses.models import BossEncounter, BossStatus
    from core import authority, keys
    from core.phases import OPENING_PHASE_NAME
    from core.redis import get_redis

    rows = [
        BossEncounter(
            name=f"{name_prefix}{i}",
            slug=f"{slug_prefix}{i}",
            max_hp=max_hp,
            phases="",
            incarnation=uuid.uuid4().hex,
        )
        for i in range(count)
    ]
    BossEncounter.objects.bulk_create(rows)
    made = list(BossEncounter.objects.filter(slug__in=[b.slug for b in rows]).order_by("pk"))
    r = get_redis()
    for start in range(0, len(made), batch):
        part = made[start : start + batch]
        calls = [
            authority.seed_call(
                boss_id=b.pk,
                max_hp=b.max_hp,
                phases=[],
                opening=OPENING_PHASE_NAME,
                fight=b.fight,
                slug=b.slug,
                min_tick_ms=min_tick_ms,
                floors={},
                incarnation=b.incarnation,
            )
            for b in part
        ]
        refused = [out for out in authority.run_many(r, calls) if out.code != "ok"]
        if refused:
            raise RuntimeError(f"seeding live bosses refused: {refused[0]}")
        r.sadd(keys.LIVE_BOSSES, *[b.pk for b in part])
    BossEncounter.objects.filter(pk__in=[b.pk for b in made]).update(status=BossStatus.LIVE)
    return made


def boss_seed_call(boss_id: int, *, max_hp: int = BENCH_MAX_HP):
    """The seed call of a bench boss: no phases, no tick spacing, slug ``bench-<id>``."""
    from core import authority
    from core.phases import OPENING_PHASE_NAME

    return authority.seed_call(
        boss_id=boss_id,
        max_hp=max_hp,
        phases=[],
        opening=OPENING_PHASE_NAME,
        fight=1,
        slug=f"bench-{boss_id}",
        min_tick_ms=0,
        floors={},
    )


async def boss_forget(boss_id: int, shard_keys: Sequence[str] = ()) -> None:
    """Delete a bench boss's keys and its shards' epochs."""
    from core.keys import SHARD_EPOCHS, BossKeys
    from core.redis import get_async_redis

    r = get_async_redis()
    await r.delete(*BossKeys(boss_id).all())
    if shard_keys:
        await r.hdel(SHARD_EPOCHS, *shard_keys)


class ShardBuffer:
    """What a shard holds in memory (the SDK's buffer, reduced to its hot path) and how it
    sends it: :meth:`flush`, one delta through :func:`shards.services.adelta_ingest`."""

    __slots__ = ("boss_id", "epoch", "hits", "ingests", "key", "pending", "sent", "seq", "unacked")

    def __init__(self, *, boss_id: int, key: str, epoch: int = 1) -> None:
        self.boss_id, self.key, self.epoch = boss_id, key, epoch
        self.pending = 0  # hit since the last delta
        self.unacked = 0  # the last delta's amount while its ack is outstanding
        self.hits = 0
        self.seq = 0
        self.sent = 0  # damage the authority acknowledged
        self.ingests = 0

    def hit(self, amount: int) -> None:
        """O(1), in memory: no network, no lock."""
        self.pending += amount
        self.hits += 1

    async def flush(self) -> int:
        """Send one delta; returns the amount acknowledged (0: nothing to send).

        What is pending goes under a new seq; after a refused ack (the ingest raised, e.g.
        ``AuthorityUnavailable``) the next flush re-sends the same seq and amount, as the SDK
        does: the authority acknowledges a duplicate without counting it twice.
        """
        from shards.services import adelta_ingest

        if not self.unacked:
            if not self.pending:
                return 0
            self.unacked, self.pending = self.pending, 0
            self.seq += 1
        amount = self.unacked
        await adelta_ingest(
            boss_id=self.boss_id, shard_key=self.key, epoch=self.epoch, seq=self.seq, amount=amount
        )
        self.unacked = 0
        self.sent += amount
        self.ingests += 1
        return amount


# --- tables ----------------------------------------------------------------------------------


def table(header: str, rows: Iterable[str]) -> list[str]:
    """A Markdown table: ``header`` (``| a | b |``), its rule, ``rows``, then a blank line."""
    return [header, "|" + "---|" * (header.count("|") - 1), *rows, ""]


def short_row(cells: Sequence[str], width: int) -> str:
    """A row of ``width`` columns with only the first ``cells`` filled (a skipped or failed row)."""
    return "| " + " | ".join(cells) + " |" + " |" * (width - len(cells))


def titled(title: str, section: dict[str, Any] | None) -> tuple[list[str], bool]:
    """A section's heading lines and whether its table follows: ``([], False)`` when the
    section did not run, the heading and its error line when it failed."""
    if not section:
        return [], False
    if "error" in section:
        return [title, "", f"error: {section['error']}", ""], False
    return [title, ""], True
