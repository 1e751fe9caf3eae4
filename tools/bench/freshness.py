"""Freshness and sync-tick timing, measured exactly from the event log.

Freshness of a hit = time from the hit to the receipt of the first ``state`` message whose
version includes it. "Includes" is decided exactly, not guessed from HP: every tick's log
entry lists what it drained per session (``d``), so the first version whose cumulative
drained amount for the hit's session reaches the cumulative damage up to that hit is the
version that applied it (a buffer is drained whole, never in part).

Sync-tick intervals come from ``core.keys.TICK_TIMES`` (the start time of each beat-driven
tick, pushed by :func:`bosses.services.boss_tick_all`).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from dataclasses import dataclass, field
from typing import Any

from core import keys
from tools.bench.authority import percentile


@dataclass
class FreshnessTracker:
    """Collects hit samples and state receipts; :meth:`compute` returns the freshness list."""

    # session -> list of (cumulative damage including the sampled hit, hit time in s)
    samples: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # version -> first receipt time (s, time.time())
    received: dict[int, float] = field(default_factory=dict)
    states: int = 0

    def hit(self, session: str, cumulative: int, at: float | None = None) -> None:
        """Record a sampled hit of ``session`` whose damage brings its total to ``cumulative``."""
        self.samples.setdefault(session, []).append((cumulative, time.time() if at is None else at))

    def state(self, version: int, at: float | None = None) -> None:
        """Record the receipt of a state message."""
        self.states += 1
        self.received.setdefault(version, time.time() if at is None else at)

    def compute(self, log_entries: list[tuple[str, dict[str, str]]]) -> tuple[list[float], int]:
        """Freshness in seconds of every sampled hit that some received state included.

        Returns ``(freshness list, samples never seen applied)``.
        """
        # cumulative drained per session at each version
        drained: dict[str, tuple[list[int], list[int]]] = {}
        totals: dict[str, int] = {}
        for _, f in log_entries:
            if f.get("kind") != "tick":
                continue
            v = int(f["v"])
            for field_name, amount in json.loads(f.get("d") or "{}").items():
                parsed = keys.parse_session(field_name)  # a recovered twin counts for its session
                sess = parsed.session if parsed is not None else field_name
                totals[sess] = totals.get(sess, 0) + int(amount)
                cums, vers = drained.setdefault(sess, ([], []))
                cums.append(totals[sess])
                vers.append(v)
        # earliest receipt at or after each version (a skipped version is covered by a newer one)
        recv_versions = sorted(self.received)
        suffix_min: list[float] = [0.0] * len(recv_versions)
        best = float("inf")
        for i in range(len(recv_versions) - 1, -1, -1):
            best = min(best, self.received[recv_versions[i]])
            suffix_min[i] = best
        out: list[float] = []
        missing = 0
        for sess, hits in self.samples.items():
            cums, vers = drained.get(sess, ([], []))
            for cumulative, at in hits:
                i = bisect.bisect_left(cums, cumulative)
                if i == len(cums):
                    missing += 1
                    continue
                j = bisect.bisect_left(recv_versions, vers[i])
                if j == len(recv_versions):
                    missing += 1
                    continue
                out.append(max(0.0, suffix_min[j] - at))
        return out, missing


async def state_listener(
    redis_url: str,
    boss_id: int,
    tracker: FreshnessTracker,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    """Subscribe to a boss's state channel (as every ASGI process does) and record receipts."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.state_channel(boss_id))
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if msg is None:
                continue
            now = time.time()
            body = json.loads(msg["data"])
            if body.get("type") == "state":
                tracker.state(int(body["version"]), now)
    finally:
        await pubsub.aclose()
        await client.aclose()


def tick_intervals_ms(tick_times_ms: list[int], since_ms: int, until_ms: int) -> list[float]:
    """Intervals between consecutive tick starts inside ``[since_ms, until_ms]``."""
    inside = [t for t in sorted(tick_times_ms) if since_ms <= t <= until_ms]
    return [float(b - a) for a, b in zip(inside, inside[1:])]


def summarize_ms(values_s_or_ms: list[float], *, scale: float = 1.0) -> dict[str, Any]:
    """n, p50, p99 and max (in ms, after multiplying by ``scale``)."""
    vals = [v * scale for v in values_s_or_ms]
    return {
        "n": len(vals),
        "p50_ms": round(percentile(vals, 50), 1),
        "p99_ms": round(percentile(vals, 99), 1),
        "max_ms": round(max(vals), 1) if vals else 0.0,
    }


async def tick_and_freshness(
    *,
    boss_id: int,
    redis_url: str,
    seconds: float,
    shards: int = 20,
    hits_per_s: float = 50_000,
    sample_every: int = 500,
) -> dict[str, Any]:
    """Run an SDK-like load (direct ingest, 100 ms shard ticks) while the REAL beat and worker tick.

    The caller must have a worker and a beat running on the same Redis (the boss is put in the
    live set and ticked only by them).
    """
    import random

    from bosses.selectors import boss_tick_times_ms
    from core import authority
    from core.keys import SHARD_EPOCHS
    from core.redis import get_async_redis, get_redis
    from shards.services import adelta_ingest
    from tools.bench.authority import BENCH_MAX_HP, DAMAGES, SHARD_TICK_MS, ShardBuffer, _seed

    r = get_async_redis()
    await _seed(r, boss_id, max_hp=BENCH_MAX_HP)
    # a 100 ms boss: same minimum spacing as boss_go_live gives it
    await r.hset(keys.BossKeys(boss_id).state, "min_tick_ms", 80)
    shard_keys = [f"fresh-{boss_id}-s{i}" for i in range(shards)]
    await r.hset(SHARD_EPOCHS, mapping=dict.fromkeys(shard_keys, 1))
    tracker = FreshnessTracker()
    stop = asyncio.Event()
    ready = asyncio.Event()
    listener = asyncio.create_task(state_listener(redis_url, boss_id, tracker, stop, ready))
    await ready.wait()
    await r.sadd(keys.LIVE_BOSSES, boss_id)
    sent = {"ingests": 0, "damage": 0}
    stopping = asyncio.Event()

    async def shard(index: int) -> None:
        key = shard_keys[index]
        sess = keys.session_id(key, 1)
        buf = ShardBuffer()
        total = 0
        seq = 0
        rate = hits_per_s / shards
        started = time.perf_counter()
        done = 0
        i = random.randrange(4096)
        next_flush = started + random.random() * SHARD_TICK_MS / 1000
        while True:
            final = stopping.is_set()
            due = int((time.perf_counter() - started) * rate) - done
            for _ in range(max(0, due) if not final else 0):
                d = DAMAGES[i & 4095]
                buf.hit(d)
                total += d
                i += 1
                if i % sample_every == 0:
                    tracker.hit(sess, total)
            done += max(0, due)
            if time.perf_counter() >= next_flush or final:
                next_flush += SHARD_TICK_MS / 1000
                amount = buf.pending
                if amount:
                    buf.pending -= amount
                    seq += 1
                    await adelta_ingest(boss_id=boss_id, shard_key=key, epoch=1, seq=seq, amount=amount)
                    sent["ingests"] += 1
                    sent["damage"] += amount
            if final:
                return
            await asyncio.sleep(0.01)

    since_ms = int(time.time() * 1000)
    tasks = [asyncio.create_task(shard(i)) for i in range(shards)]
    await asyncio.sleep(seconds)
    stopping.set()
    await asyncio.gather(*tasks)
    until_ms = int(time.time() * 1000)
    # let the beat drain the last deltas, then stop listening
    deadline = time.monotonic() + 5
    k = keys.BossKeys(boss_id)
    while time.monotonic() < deadline and await r.hlen(k.buf):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stop.set()
    await listener
    await r.srem(keys.LIVE_BOSSES, boss_id)
    log = await r.xrange(k.log)
    fresh, missing = tracker.compute(log)
    state = await authority.aread_state(r, boss_id)
    intervals = tick_intervals_ms(await asyncio.to_thread(boss_tick_times_ms), since_ms, until_ms)
    await r.delete(*k.all())
    await r.hdel(SHARD_EPOCHS, *shard_keys)
    get_redis()  # keep the sync client warm for the caller
    return {
        "tick_interval": summarize_ms(intervals),
        "freshness": summarize_ms(fresh, scale=1000.0),
        "freshness_missing": missing,
        "states": tracker.states,
        "offered_hits_per_s": hits_per_s,
        "ingests": sent["ingests"],
        "hp_exact": state is not None and state.hp == BENCH_MAX_HP - sent["damage"],
    }
