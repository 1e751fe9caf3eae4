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
from tools.bench.harness import BENCH_MAX_HP, ShardBuffer, boss_forget, boss_seed, summarize_ms


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


async def _paced_shard(
    buf: ShardBuffer, *, rate: float, tracker: FreshnessTracker, stopping: asyncio.Event, sample_every: int
) -> None:
    """Hits at ``rate`` per second, one delta per shard tick (the last after ``stopping``);
    one hit in ``sample_every`` is a freshness sample of the shard's session."""
    import random

    from tools.bench.authority import DAMAGES, SHARD_TICK_MS

    sess = keys.session_id(buf.key, buf.epoch)
    total = done = 0
    started = time.perf_counter()
    i = random.randrange(4096)
    next_flush = started + random.random() * SHARD_TICK_MS / 1000
    while True:
        final = stopping.is_set()
        due = 0 if final else max(0, int((time.perf_counter() - started) * rate) - done)
        for _ in range(due):
            d = DAMAGES[i & 4095]
            buf.hit(d)
            total += d
            i += 1
            if i % sample_every == 0:
                tracker.hit(sess, total)
        done += due
        if time.perf_counter() >= next_flush or final:
            next_flush += SHARD_TICK_MS / 1000
            await buf.flush()
        if final:
            return
        await asyncio.sleep(0.01)


async def _drained(boss_id: int, timeout_s: float = 5.0) -> None:
    """Wait until the beat drained the boss's last deltas (or ``timeout_s``), and a moment more
    for their state to arrive."""
    from core.redis import get_async_redis

    r = get_async_redis()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and await r.hlen(keys.BossKeys(boss_id).buf):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


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
    from bosses.selectors import boss_tick_times_ms
    from core import authority
    from core.redis import get_async_redis

    r = get_async_redis()
    shard_keys = [f"fresh-{boss_id}-s{i}" for i in range(shards)]
    await boss_seed(boss_id, shard_keys=shard_keys)
    # a 100 ms boss: same minimum spacing as boss_go_live gives it
    await r.hset(keys.BossKeys(boss_id).state, "min_tick_ms", 80)
    tracker = FreshnessTracker()
    stop, ready, stopping = asyncio.Event(), asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(state_listener(redis_url, boss_id, tracker, stop, ready))
    await ready.wait()
    await r.sadd(keys.LIVE_BOSSES, boss_id)
    buffers = [ShardBuffer(boss_id=boss_id, key=k) for k in shard_keys]
    since_ms = int(time.time() * 1000)
    tasks = [
        asyncio.create_task(
            _paced_shard(
                b, rate=hits_per_s / shards, tracker=tracker, stopping=stopping, sample_every=sample_every
            )
        )
        for b in buffers
    ]
    await asyncio.sleep(seconds)
    stopping.set()
    await asyncio.gather(*tasks)
    until_ms = int(time.time() * 1000)
    await _drained(boss_id)  # then stop listening
    stop.set()
    await listener
    await r.srem(keys.LIVE_BOSSES, boss_id)
    fresh, missing = tracker.compute(await r.xrange(keys.BossKeys(boss_id).log))
    state = await authority.aread_state(r, boss_id)
    intervals = tick_intervals_ms(await asyncio.to_thread(boss_tick_times_ms), since_ms, until_ms)
    await boss_forget(boss_id, shard_keys)
    return {
        "tick_interval": summarize_ms(intervals),
        "freshness": summarize_ms(fresh, scale=1000.0),
        "freshness_missing": missing,
        "states": tracker.states,
        "offered_hits_per_s": hits_per_s,
        "ingests": sum(b.ingests for b in buffers),
        "hp_exact": state is not None and state.hp == BENCH_MAX_HP - sum(b.sent for b in buffers),
    }
