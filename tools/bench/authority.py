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
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core.keys import BossKeys, bench_key

WRITERS = 50
SHARD_TICK_MS = 100
SYNC_TICK_MS = 100
BENCH_MAX_HP = 10**15
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


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


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


async def peer_watch(url: str, seconds: float) -> PeerResult:
    """WATCH/MULTI optimistic read-modify-write of one HP key, retried on conflict."""
    tag = secrets.token_hex(4)
    hp_key, ver_key = bench_key(tag, "hp"), bench_key(tag, "ver")
    clients = _clients(url, WRITERS)
    await clients[0].set(hp_key, BENCH_MAX_HP)
    it = iter(clients)

    async def writer(c: _Counter, stop_at: float) -> None:
        r = next(it)
        i = random.randrange(4096)
        while time.perf_counter() < stop_at:
            d = _damage(i)
            i += 1
            t0 = time.perf_counter()
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
                        break
                    except aioredis.WatchError:
                        c.retries += 1
            c.latencies.append(time.perf_counter() - t0)
            c.hits += 1
            c.damage += d

    try:
        counter, elapsed = await _run_writers(seconds, writer)
        exact = int(await clients[0].get(hp_key)) == BENCH_MAX_HP - counter.damage
        return _finish("Redis WATCH/MULTI per hit", counter, elapsed, exact)
    finally:
        await clients[0].delete(hp_key, ver_key)
        await _close(clients)


async def peer_lock(url: str, seconds: float) -> PeerResult:
    """A Redis lock (SET NX PX) around GET + SET of one HP key, 1 ms retry sleep."""
    tag = secrets.token_hex(4)
    hp_key, lock_key = bench_key(tag, "hp"), bench_key(tag, "lock")
    clients = _clients(url, WRITERS)
    await clients[0].set(hp_key, BENCH_MAX_HP)
    it = iter(clients)

    async def writer(c: _Counter, stop_at: float) -> None:
        r = next(it)
        unlock = r.register_script(LUA_UNLOCK)
        me = secrets.token_hex(8)
        i = random.randrange(4096)
        while time.perf_counter() < stop_at:
            d = _damage(i)
            i += 1
            t0 = time.perf_counter()
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
            c.latencies.append(time.perf_counter() - t0)
            c.hits += 1
            c.damage += d

    try:
        counter, elapsed = await _run_writers(seconds, writer)
        exact = int(await clients[0].get(hp_key)) == BENCH_MAX_HP - counter.damage
        return _finish("Redis lock (SET NX PX) + read-modify-write", counter, elapsed, exact)
    finally:
        await clients[0].delete(hp_key, lock_key)
        await _close(clients)


async def peer_lua(url: str, seconds: float) -> PeerResult:
    """One atomic Lua call per hit on the global HP (no lock, no buffering)."""
    tag = secrets.token_hex(4)
    hp_key, ver_key = bench_key(tag, "hp"), bench_key(tag, "ver")
    clients = _clients(url, WRITERS)
    await clients[0].set(hp_key, BENCH_MAX_HP)
    it = iter(clients)

    async def writer(c: _Counter, stop_at: float) -> None:
        r = next(it)
        hit = r.register_script(LUA_HIT)
        i = random.randrange(4096)
        while time.perf_counter() < stop_at:
            d = _damage(i)
            i += 1
            t0 = time.perf_counter()
            await hit(keys=[hp_key, ver_key], args=[d])
            c.ops += 1
            c.latencies.append(time.perf_counter() - t0)
            c.hits += 1
            c.damage += d

    try:
        counter, elapsed = await _run_writers(seconds, writer)
        exact = int(await clients[0].get(hp_key)) == BENCH_MAX_HP - counter.damage
        return _finish("per-hit Lua on the global key", counter, elapsed, exact)
    finally:
        await clients[0].delete(hp_key, ver_key)
        await _close(clients)


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
            i = random.randrange(4096)
            while time.perf_counter() < stop_at:
                d = _damage(i)
                i += 1
                t0 = time.perf_counter()
                async with conn.transaction():
                    cur = await conn.execute(f"SELECT hp FROM {table} WHERE id = 1 FOR UPDATE")
                    (hp,) = await cur.fetchone()
                    await conn.execute(
                        f"UPDATE {table} SET hp = %s, version = version + 1 WHERE id = 1", (hp - min(d, hp),)
                    )
                c.ops += 4  # BEGIN, SELECT, UPDATE, COMMIT
                c.latencies.append(time.perf_counter() - t0)
                c.hits += 1
                c.damage += d

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


class ShardBuffer:
    """What a shard holds in memory: the SDK's buffer, reduced to its hot path."""

    __slots__ = ("hits", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.hits = 0

    def hit(self, amount: int) -> None:
        """O(1), in memory: no network, no lock."""
        self.pending += amount
        self.hits += 1


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


async def _seed(r: aioredis.Redis, boss_id: int, *, max_hp: int) -> None:
    from core import authority
    from core.phases import OPENING_PHASE_NAME

    await r.delete(*BossKeys(boss_id).all())
    await authority.arun(
        r,
        authority.seed_call(
            boss_id=boss_id,
            max_hp=max_hp,
            phases=[],
            opening=OPENING_PHASE_NAME,
            fight=1,
            slug=f"bench-{boss_id}",
            min_tick_ms=0,
            floors={},
        ),
    )


async def delta_sync_run(
    *, boss_id: int, seconds: float, shards: int = WRITERS, hits_per_s: float | None = None, players: int = 0
) -> DeltaSyncRun:
    """Run ``shards`` SDK-like buffers against the real ingest and tick for ``seconds``.

    ``hits_per_s=None`` hits as fast as the writers can (the lock-storm row); otherwise the
    writers pace themselves to that offered load (the players-grow rows).
    """
    from bosses.services import boss_tick
    from core import authority
    from core.keys import SHARD_EPOCHS
    from core.redis import get_async_redis
    from shards.services import adelta_ingest

    r = get_async_redis()
    await _seed(r, boss_id, max_hp=BENCH_MAX_HP)
    keys_ = [f"bench-{boss_id}-s{i}" for i in range(shards)]
    epoch = 1
    await r.hset(SHARD_EPOCHS, mapping=dict.fromkeys(keys_, epoch))
    buffers = [ShardBuffer() for _ in keys_]
    stats = {"ingests": 0, "ticks": 0, "applied": 0}
    latencies: list[float] = []
    stopping = asyncio.Event()
    sent_damage = [0] * shards

    async def writer(buf: ShardBuffer) -> None:
        i = random.randrange(4096)
        hit = buf.hit
        perf = time.perf_counter
        started = perf()
        done = 0
        while not stopping.is_set():
            if hits_per_s is None:
                n = HIT_BATCH
            else:  # paced: catch up to the offered rate, then sleep a little
                due = int((perf() - started) * hits_per_s / shards) - done
                if due <= 0:
                    await asyncio.sleep(0.005)
                    continue
                n = min(due, HIT_BATCH)
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
            done += n
            await asyncio.sleep(0)

    async def shard_tick(index: int) -> None:
        buf, key = buffers[index], keys_[index]
        seq = 0
        await asyncio.sleep(random.random() * SHARD_TICK_MS / 1000)  # shards are not in lockstep
        while True:
            final = stopping.is_set()
            amount = buf.pending
            if amount:
                buf.pending -= amount
                seq += 1
                await adelta_ingest(boss_id=boss_id, shard_key=key, epoch=epoch, seq=seq, amount=amount)
                sent_damage[index] += amount
                stats["ingests"] += 1
            if final:
                return
            await asyncio.sleep(SHARD_TICK_MS / 1000)

    async def sync_tick() -> None:
        while not stopping.is_set():
            await asyncio.sleep(SYNC_TICK_MS / 1000)
            out = await asyncio.to_thread(boss_tick, boss_id=boss_id, force=True)
            stats["ticks"] += 1
            stats["applied"] += out.code == "applied"

    started = time.perf_counter()
    writers = [asyncio.create_task(writer(b)) for b in buffers]
    tickers = [asyncio.create_task(shard_tick(i)) for i in range(shards)]
    syncer = asyncio.create_task(sync_tick())
    await asyncio.sleep(seconds)
    stopping.set()
    await asyncio.gather(*writers)
    await asyncio.gather(*tickers)  # each sends its last buffer
    await syncer
    elapsed = time.perf_counter() - started
    await asyncio.to_thread(boss_tick, boss_id=boss_id, force=True)  # the catch-up tick
    stats["ticks"] += 1
    state = await authority.aread_state(r, boss_id)
    damage = sum(sent_damage)
    hits = sum(b.hits for b in buffers)
    expected = BENCH_MAX_HP - damage
    await r.delete(*BossKeys(boss_id).all())
    await r.hdel(SHARD_EPOCHS, *keys_)
    return DeltaSyncRun(
        seconds=elapsed,
        hits=hits,
        damage=damage,
        ingests=stats["ingests"],
        ticks=stats["ticks"],
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
        ("WATCH/MULTI", lambda: peer_watch(redis_url, seconds)),
        ("lock", lambda: peer_lock(redis_url, seconds)),
        ("PostgreSQL", lambda: peer_postgres(pg_url, seconds)),
        ("per-hit Lua", lambda: peer_lua(redis_url, seconds)),
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


def p50_p99(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``values``."""
    return percentile(values, 50), percentile(values, 99)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
