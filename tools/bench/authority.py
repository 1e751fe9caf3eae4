"""The lock storm, side by side: delta-sync vs peers that apply every hit to one global HP.

Every approach runs ``WRITERS`` (50) concurrent writers for the same time against the same
Redis (and PostgreSQL when reachable), and reports hits/s, per-hit latency p50/p99,
authority operations per hit (round trips to Redis/PostgreSQL), and whether the final HP is
exact (``max_hp - sum of acknowledged damage``).

Peers (each hit is a read-modify-write of the global HP):
- ``watch``: Redis WATCH / GET / MULTI SET EXEC, retried on conflict;
- ``lock``: a Redis lock (SET NX PX, 1 ms retry sleep) around GET + SET, released by a
  compare-and-delete script;
- ``postgres``: ``SELECT hp ... FOR UPDATE`` + ``UPDATE`` in one transaction;
- ``lua``: one atomic Lua call per hit on the global key (no lock, but no buffering).

Delta-sync (the design): each writer is a shard whose hits go into an in-memory buffer
(the SDK's ``hit()``); once per shard tick (100 ms) the buffer's sum goes to the platform
through :func:`shards.services.adelta_ingest` (the real Lua ingest, exactly-once per seq), and
once per sync tick (100 ms) :func:`bosses.services.boss_tick` applies everything. The hit
latency is what the game waits for: the in-memory add.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core.keys import bench_key
from tools.bench.harness import BENCH_MAX_HP, ShardBuffer, boss_forget, boss_seed, percentile

WRITERS = 50
SHARD_TICK_MS = 100
SYNC_TICK_MS = 100
# Hits between yields of a delta-sync writer (keeps shard ticks on time).
HIT_BATCH = 2_000
# One in this many delta-sync hits has its own latency measured (timing every hit would
# cost more than the hit).
LATENCY_SAMPLE_EVERY = 257
DAMAGES = [random.Random(7).randint(50, 150) for _ in range(4096)]

LUA_HIT = """
local hp = tonumber(redis.call('GET', KEYS[1]))
local d = tonumber(ARGV[1])
if d > hp then d = hp end
redis.call('SET', KEYS[1], hp - d)
redis.call('INCR', KEYS[2])
return hp - d
"""
LUA_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class PeerResult:
    """One row of the lock-storm table."""

    approach: str
    writers: int = WRITERS
    seconds: float = 0.0
    hits: int = 0
    hits_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    authority_ops: int = 0
    ops_per_hit: float = 0.0
    retries_per_hit: float = 0.0
    hp_exact: bool | None = None
    skipped: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Counter:
    def __init__(self) -> None:
        self.ops = 0
        self.retries = 0
        self.hits = 0
        self.damage = 0
        self.latencies: list[float] = []


async def _run_writers(
    seconds: float, writer: Callable[[_Counter, float], Awaitable[None]]
) -> tuple[_Counter, float]:
    counter = _Counter()
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(writer(counter, stop_at) for _ in range(WRITERS)))
    return counter, time.perf_counter() - started


def _finish(name: str, counter: _Counter, elapsed: float, exact: bool | None, note: str = "") -> PeerResult:
    hits = counter.hits
    return PeerResult(
        approach=name,
        seconds=round(elapsed, 2),
        hits=hits,
        hits_per_s=round(hits / elapsed, 1) if elapsed else 0.0,
        p50_ms=round(percentile(counter.latencies, 50) * 1000, 3),
        p99_ms=round(percentile(counter.latencies, 99) * 1000, 3),
        authority_ops=counter.ops,
        ops_per_hit=round(counter.ops / hits, 4) if hits else 0.0,
        retries_per_hit=round(counter.retries / hits, 2) if hits else 0.0,
        hp_exact=exact,
        note=note,
    )


def _clients(url: str, n: int) -> list[aioredis.Redis]:
    return [aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=30) for _ in range(n)]


async def _close(clients: list[aioredis.Redis]) -> None:
    for c in clients:
        await c.aclose()


def _damage(i: int) -> int:
    return DAMAGES[i & 4095]


# --- Redis peers ---------------------------------------------------------------------------

HitFn = Callable[[_Counter, int], Awaitable[None]]


async def _hit_loop(c: _Counter, stop_at: float, one_hit: HitFn) -> None:
    """One writer: hits back to back until ``stop_at``, each timed."""
    i = random.randrange(4096)
    while time.perf_counter() < stop_at:
        d = _damage(i)
        i += 1
        t0 = time.perf_counter()
        await one_hit(c, d)
        c.latencies.append(time.perf_counter() - t0)
        c.hits += 1
        c.damage += d


async def _redis_peer(
    url: str, seconds: float, name: str, other: str, make_hit: Callable[[aioredis.Redis, str, str], HitFn]
) -> PeerResult:
    """``WRITERS`` writers, one connection each, on one HP key (and an ``other`` key);
    ``make_hit(client, hp_key, other_key)`` is one writer's hit."""
    tag = secrets.token_hex(4)
    hp_key, other_key = bench_key(tag, "hp"), bench_key(tag, other)
    clients = _clients(url, WRITERS)
    await clients[0].set(hp_key, BENCH_MAX_HP)
    it = iter(clients)

    async def writer(c: _Counter, stop_at: float) -> None:
        await _hit_loop(c, stop_at, make_hit(next(it), hp_key, other_key))

    try:
        counter, elapsed = await _run_writers(seconds, writer)
        exact = int(await clients[0].get(hp_key)) == BENCH_MAX_HP - counter.damage
        return _finish(name, counter, elapsed, exact)
    finally:
        await clients[0].delete(hp_key, other_key)
        await _close(clients)


def _watch_hit(r: aioredis.Redis, hp_key: str, ver_key: str) -> HitFn:
    async def one_hit(c: _Counter, d: int) -> None:
        while True:
            async with r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(hp_key)
                    hp = int(await pipe.get(hp_key))
                    pipe.multi()
                    pipe.set(hp_key, hp - min(d, hp))
                    pipe.incr(ver_key)
                    c.ops += 3
                    await pipe.execute()
                    return
                except aioredis.WatchError:
                    c.retries += 1

    return one_hit


def _lock_hit(r: aioredis.Redis, hp_key: str, lock_key: str) -> HitFn:
    unlock = r.register_script(LUA_UNLOCK)
    me = secrets.token_hex(8)

    async def one_hit(c: _Counter, d: int) -> None:
        while True:
            c.ops += 1
            if await r.set(lock_key, me, nx=True, px=1000):
                break
            c.retries += 1
            await asyncio.sleep(0.001)
        hp = int(await r.get(hp_key))
        await r.set(hp_key, hp - min(d, hp))
        await unlock(keys=[lock_key], args=[me])
        c.ops += 3

    return one_hit


def _lua_hit(r: aioredis.Redis, hp_key: str, ver_key: str) -> HitFn:
    hit = r.register_script(LUA_HIT)

    async def one_hit(c: _Counter, d: int) -> None:
        await hit(keys=[hp_key, ver_key], args=[d])
        c.ops += 1

    return one_hit


# The Redis peers: (row name, second key, one writer's hit).
# watch: WATCH/MULTI optimistic read-modify-write of one HP key, retried on conflict;
# lock: a Redis lock (SET NX PX) around GET + SET, 1 ms retry sleep;
# lua: one atomic Lua call per hit on the global HP (no lock, no buffering).
REDIS_PEERS = {
    "watch": ("Redis WATCH/MULTI per hit", "ver", _watch_hit),
    "lock": ("Redis lock (SET NX PX) + read-modify-write", "lock", _lock_hit),
    "lua": ("per-hit Lua on the global key", "ver", _lua_hit),
}


# --- PostgreSQL peer -------------------------------------------------------------------------


def postgres_url_candidates(database_url: str | None) -> list[str]:
    """DATABASE_URL when it is PostgreSQL, then the local default cluster."""
    found = []
    if database_url and database_url.startswith(("postgres://", "postgresql://")):
        found.append(database_url)
    found.append("postgres://postgres@127.0.0.1:5432/postgres")
    return found


async def postgres_reachable(urls: list[str]) -> str | None:
    """The first URL psycopg can connect to within 2 s, or None."""
    import psycopg

    for url in urls:
        try:
            conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(url, connect_timeout=2), 3)
        except Exception:
            continue
        await conn.close()
        return url
    return None


async def peer_postgres(pg_url: str | None, seconds: float) -> PeerResult:
    """``SELECT ... FOR UPDATE`` + ``UPDATE`` per hit, each in its own transaction."""
    name = "PostgreSQL SELECT ... FOR UPDATE per hit"
    if pg_url is None:
        return PeerResult(approach=name, skipped="skipped: PostgreSQL not reachable")
    import psycopg

    table = f"liveops_bench_hp_{secrets.token_hex(4)}"
    admin = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    await admin.execute(f"CREATE UNLOGGED TABLE {table} (id int PRIMARY KEY, hp bigint, version bigint)")
    await admin.execute(f"INSERT INTO {table} VALUES (1, %s, 1)", (BENCH_MAX_HP,))
    conns = []
    try:
        for _ in range(WRITERS):
            conns.append(await psycopg.AsyncConnection.connect(pg_url))
        it = iter(conns)

        async def writer(c: _Counter, stop_at: float) -> None:
            conn = next(it)

            async def one_hit(c: _Counter, d: int) -> None:
                async with conn.transaction():
                    cur = await conn.execute(f"SELECT hp FROM {table} WHERE id = 1 FOR UPDATE")
                    (hp,) = await cur.fetchone()
                    await conn.execute(
                        f"UPDATE {table} SET hp = %s, version = version + 1 WHERE id = 1", (hp - min(d, hp),)
                    )
                c.ops += 4  # BEGIN, SELECT, UPDATE, COMMIT

            await _hit_loop(c, stop_at, one_hit)

        counter, elapsed = await _run_writers(seconds, writer)
        cur = await admin.execute(f"SELECT hp FROM {table} WHERE id = 1")
        (hp,) = await cur.fetchone()
        return _finish(name, counter, elapsed, hp == BENCH_MAX_HP - counter.damage)
    finally:
        for conn in conns:
            await conn.close()
        await admin.execute(f"DROP TABLE IF EXISTS {table}")
        await admin.close()


# --- delta-sync --------------------------------------------------------------------------------


@dataclass
class DeltaSyncRun:
    """Raw figures of one delta-sync run (rows are built from them)."""

    seconds: float
    hits: int
    damage: int
    ingests: int
    ticks: int
    applied_ticks: int
    latencies: list[float]
    hp_exact: bool
    final_hp: int
    expected_hp: int


def _hit_batch(buf: ShardBuffer, i: int, n: int, latencies: list[float]) -> None:
    """``n`` hits into ``buf`` from damage index ``i``; one in :data:`LATENCY_SAMPLE_EVERY`
    has its latency measured (timing every hit would cost more than the hit)."""
    hit, perf = buf.hit, time.perf_counter
    for _ in range(n // LATENCY_SAMPLE_EVERY):
        t0 = perf()
        hit(DAMAGES[i & 4095])
        latencies.append(perf() - t0)
        i += 1
        for _ in range(LATENCY_SAMPLE_EVERY - 1):
            hit(DAMAGES[i & 4095])
            i += 1
    for _ in range(n % LATENCY_SAMPLE_EVERY):
        hit(DAMAGES[i & 4095])
        i += 1


async def _writer(
    buf: ShardBuffer, stopping: asyncio.Event, latencies: list[float], per_writer_s: float | None
) -> None:
    """Hits as fast as it can (``per_writer_s=None``) or paced to that rate."""
    i = random.randrange(4096)
    started = time.perf_counter()
    done = 0
    while not stopping.is_set():
        n = HIT_BATCH
        if per_writer_s is not None:  # paced: catch up to the offered rate, then sleep a little
            n = min(int((time.perf_counter() - started) * per_writer_s) - done, HIT_BATCH)
            if n <= 0:
                await asyncio.sleep(0.005)
                continue
        _hit_batch(buf, i, n, latencies)
        i += n
        done += n
        await asyncio.sleep(0)


async def _shard_ticker(buf: ShardBuffer, stopping: asyncio.Event) -> None:
    """One delta per shard tick; the last one after ``stopping`` (nothing stays buffered)."""
    await asyncio.sleep(random.random() * SHARD_TICK_MS / 1000)  # shards are not in lockstep
    while True:
        final = stopping.is_set()
        await buf.flush()
        if final:
            return
        await asyncio.sleep(SHARD_TICK_MS / 1000)


async def _sync_ticker(boss_id: int, stopping: asyncio.Event, stats: dict[str, int]) -> None:
    from bosses.services import boss_tick

    while not stopping.is_set():
        await asyncio.sleep(SYNC_TICK_MS / 1000)
        out = await asyncio.to_thread(boss_tick, boss_id=boss_id, force=True)
        stats["ticks"] += 1
        stats["applied"] += out.code == "applied"


async def delta_sync_run(
    *, boss_id: int, seconds: float, shards: int = WRITERS, hits_per_s: float | None = None
) -> DeltaSyncRun:
    """Run ``shards`` SDK-like buffers against the real ingest and tick for ``seconds``.

    ``hits_per_s=None`` hits as fast as the writers can (the lock-storm row); otherwise the
    writers pace themselves to that offered load (the players-grow rows).
    """
    from bosses.services import boss_tick
    from core import authority
    from core.redis import get_async_redis

    keys_ = [f"bench-{boss_id}-s{i}" for i in range(shards)]
    await boss_seed(boss_id, shard_keys=keys_)
    buffers = [ShardBuffer(boss_id=boss_id, key=k) for k in keys_]
    stats = {"ticks": 0, "applied": 0}
    latencies: list[float] = []
    stopping = asyncio.Event()
    per_writer_s = None if hits_per_s is None else hits_per_s / shards
    started = time.perf_counter()
    writers = [asyncio.create_task(_writer(b, stopping, latencies, per_writer_s)) for b in buffers]
    tickers = [asyncio.create_task(_shard_ticker(b, stopping)) for b in buffers]
    syncer = asyncio.create_task(_sync_ticker(boss_id, stopping, stats))
    await asyncio.sleep(seconds)
    stopping.set()
    await asyncio.gather(*writers)
    await asyncio.gather(*tickers)  # each sends its last buffer
    await syncer
    elapsed = time.perf_counter() - started
    await asyncio.to_thread(boss_tick, boss_id=boss_id, force=True)  # the catch-up tick
    state = await authority.aread_state(get_async_redis(), boss_id)
    await boss_forget(boss_id, keys_)
    expected = BENCH_MAX_HP - sum(b.sent for b in buffers)
    return DeltaSyncRun(
        seconds=elapsed,
        hits=sum(b.hits for b in buffers),
        damage=BENCH_MAX_HP - expected,
        ingests=sum(b.ingests for b in buffers),
        ticks=stats["ticks"] + 1,
        applied_ticks=stats["applied"],
        latencies=latencies,
        hp_exact=state is not None and state.hp == expected,
        final_hp=state.hp if state else -1,
        expected_hp=expected,
    )


async def peer_delta_sync(boss_id: int, seconds: float) -> PeerResult:
    """The design under the same 50 writers: buffer -> one ingest per shard tick -> sync tick."""
    run = await delta_sync_run(boss_id=boss_id, seconds=seconds)
    ops = run.ingests + run.ticks
    return PeerResult(
        approach="delta-sync (buffer -> ingest per shard tick -> sync tick)",
        seconds=round(run.seconds, 2),
        hits=run.hits,
        hits_per_s=round(run.hits / run.seconds, 1),
        p50_ms=round(percentile(run.latencies, 50) * 1000, 5),
        p99_ms=round(percentile(run.latencies, 99) * 1000, 5),
        authority_ops=ops,
        ops_per_hit=round(ops / run.hits, 8) if run.hits else 0.0,
        hp_exact=run.hp_exact,
        note=(
            f"{run.ingests} ingests + {run.ticks} ticks; per-hit latency is the in-memory add "
            "(the hit reaches the authority within one shard tick + one sync tick: see freshness)"
        ),
        extra={
            "ingests": run.ingests,
            "ticks": run.ticks,
            "final_hp": run.final_hp,
            "expected_hp": run.expected_hp,
        },
    )


@dataclass
class ScalingRow:
    """Authority load at one player count (players grow, authority ops stay flat)."""

    players: int
    offered_hits_per_s: float
    hits_per_s: float
    authority_ops_per_s: float
    ops_per_hit: float
    hp_exact: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def authority_scaling(
    *, boss_id: int, seconds: float, players: list[int], hits_per_player_s: float = 2.0, shards: int = WRITERS
) -> list[ScalingRow]:
    """Authority operations/s at each player count (offered load = players x rate)."""
    rows = []
    for n, count in enumerate(players):
        offered = count * hits_per_player_s
        run = await delta_sync_run(boss_id=boss_id + n, seconds=seconds, shards=shards, hits_per_s=offered)
        ops = run.ingests + run.ticks
        rows.append(
            ScalingRow(
                players=count,
                offered_hits_per_s=offered,
                hits_per_s=round(run.hits / run.seconds, 1),
                authority_ops_per_s=round(ops / run.seconds, 1),
                ops_per_hit=round(ops / run.hits, 6) if run.hits else 0.0,
                hp_exact=run.hp_exact,
            )
        )
    return rows


async def lock_storm(
    *,
    redis_url: str,
    pg_url: str | None,
    boss_id: int,
    seconds: float,
    progress: Callable[[str], None] = lambda s: None,
) -> list[PeerResult]:
    """Every approach, one after the other, same writers and duration; delta-sync first."""
    results = []
    for label, make in (
        ("delta-sync", lambda: peer_delta_sync(boss_id, seconds)),
        ("WATCH/MULTI", lambda: _redis_peer(redis_url, seconds, *REDIS_PEERS["watch"])),
        ("lock", lambda: _redis_peer(redis_url, seconds, *REDIS_PEERS["lock"])),
        ("PostgreSQL", lambda: peer_postgres(pg_url, seconds)),
        ("per-hit Lua", lambda: _redis_peer(redis_url, seconds, *REDIS_PEERS["lua"])),
    ):
        progress(f"lock storm: {label} ({seconds:g} s, {WRITERS} writers)")
        results.append(await make())
    return results


def with_ratios(results: list[PeerResult]) -> tuple[list[PeerResult], str]:
    """Add ``ratio_to_best_peer`` to each row; returns the rows and the best peer's name."""
    peers = [r for r in results if not r.skipped and not r.approach.startswith("delta-sync")]
    best = max(peers, key=lambda r: r.hits_per_s) if peers else None
    for r in results:
        if best and best.hits_per_s and not r.skipped:
            r.extra["ratio_to_best_peer"] = float(f"{r.hits_per_s / best.hits_per_s:.3g}")
    return results, best.approach if best else ""
