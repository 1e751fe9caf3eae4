"""Many live bosses: the cost of one sync tick pass, per-boss loop (before) vs dirty pass (now).

Authority-only bosses (no SQL rows, ids from ``BOSS_ID_BASE``) on the bench's Redis. For each
scenario (``active`` bosses damaged every tick, ``idle`` live bosses with nothing buffered):

* **pass**: both implementations side by side on the same bosses, alternating rounds, each
  round after one delta per active boss: the per-boss loop of the previous release (tick
  script, state read, publish: three round trips per live boss, idle ones included) and
  :func:`bosses.services.boss_tick_all` (one pipeline over the dirty sets, pipelined ticks
  of the marked bosses only, one pipeline of publishes). Reported: pass p50/p99 and the ratio.
* **cadence**: the dirty pass run every ``SYNC_TICK_INTERVAL_MS`` for ``seconds`` while a
  loader *process* damages every active boss once per interval and a probe thread damages
  one more active boss at a random moment of each interval and waits for the state message
  that carries it on pub/sub. Reported: tick interval p99 (start to start) and freshness
  p99 (probe's ingest ack to the state message on its subscriber).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from tools.bench.harness import boss_seed_call, percentile, start_cluster

SHARD = "bench-shard"
EPOCH = 1
INGEST_BATCH = 1_000
SEED_BATCH = 1_000


def _pct(values: list[float], p: float) -> float:
    """:func:`tools.bench.harness.percentile`, to 0.01 ms."""
    return round(percentile(values, p), 2)


def _seed(r, ids: list[int]) -> None:
    from core import authority, keys

    for start in range(0, len(ids), SEED_BATCH):
        batch = ids[start : start + SEED_BATCH]
        _forget(r, batch).execute()
        authority.run_many(r, [boss_seed_call(b) for b in batch])
        r.sadd(keys.LIVE_BOSSES, *batch)
        r.hset(keys.SHARD_EPOCHS, SHARD, EPOCH)


def _forget(r, batch: list[int]):
    """A pipeline deleting every key, dirty and unarchived mark of ``batch`` (not yet executed)."""
    from core import keys

    pipe = r.pipeline(transaction=False)
    for boss_id in batch:
        for key in keys.BossKeys(boss_id).all():  # one key per DEL: a cluster pipeline needs it
            pipe.delete(key)
        pipe.srem(keys.BossKeys(boss_id).dirty, boss_id)
        pipe.srem(keys.BossKeys(boss_id).unarchived, boss_id)
    return pipe


def _drop(r, ids: list[int]) -> None:
    from core import keys

    for start in range(0, len(ids), SEED_BATCH):
        batch = ids[start : start + SEED_BATCH]
        pipe = _forget(r, batch)
        pipe.srem(keys.LIVE_BOSSES, *batch)
        pipe.execute()


def _damage(r, ids: list[int], seqs: dict[int, int]) -> None:
    """One delta per boss, as the gateways would send them (pipelined ingest scripts)."""
    from core import authority

    for start in range(0, len(ids), INGEST_BATCH):
        batch = ids[start : start + INGEST_BATCH]
        calls = []
        for boss_id in batch:
            seqs[boss_id] = seqs.get(boss_id, 0) + 1
            calls.append(
                authority.ingest_call(
                    boss_id=boss_id, shard_key=SHARD, epoch=EPOCH, seq=seqs[boss_id], amount=7
                )
            )
        for out in authority.run_many(r, calls):
            if isinstance(out, Exception) or out.code != "ok":
                raise RuntimeError(f"bench ingest refused: {out!r}")


def per_boss_pass(r) -> None:
    """The previous release's pass: every live boss, three round trips each."""
    from bosses.broadcast import messages_publish
    from core import authority, keys

    for boss_id in sorted(int(i) for i in r.smembers(keys.LIVE_BOSSES)):
        out = authority.run(r, authority.tick_call(boss_id=boss_id))
        if out.code == "applied":
            state = authority.read_state(r, boss_id)
            if state is not None:
                messages_publish(boss_id=boss_id, messages=[state.as_message()])


@dataclass
class PassRow:
    """Pass duration of both implementations on one scenario."""

    active: int
    idle: int
    rounds: int
    per_boss_p50_ms: float
    per_boss_p99_ms: float
    dirty_p50_ms: float
    dirty_p99_ms: float
    ratio_p50: float


# Wall time the alternating rounds of one scenario may take, by mode: the per-boss loop costs
# three round trips per live boss (seconds a pass at 12,000 bosses on a loaded machine, more
# with the AOF fsync on every write), so a scenario stops early (two rounds of each at least)
# and its row says how many rounds it ran.
ROUNDS_BUDGET_S = {"full": 120.0, "quick": 6.0, "smoke": 10.0}
MIN_ROUNDS = 2


def compare_passes(
    *, active: int, idle: int, rounds: int, id_base: int, budget_s: float = float("inf")
) -> PassRow:
    """Alternate the two passes on the same bosses; damage every active boss before each.
    Stops after ``rounds`` of each, or once ``budget_s`` is spent and MIN_ROUNDS of each ran."""
    from bosses.services import boss_tick_all
    from core.redis import get_redis

    r = get_redis()
    active_ids = list(range(id_base, id_base + active))
    idle_ids = list(range(id_base + active, id_base + active + idle))
    _seed(r, active_ids + idle_ids)
    seqs: dict[int, int] = {}
    old: list[float] = []
    new: list[float] = []
    started_all = time.perf_counter()
    try:
        for i in range(rounds * 2):
            if (
                len(new) >= MIN_ROUNDS
                and len(old) == len(new)
                and time.perf_counter() - started_all > budget_s
            ):
                break
            _damage(r, active_ids, seqs)
            started = time.perf_counter()
            if i % 2:
                boss_tick_all()
                new.append((time.perf_counter() - started) * 1000)
            else:
                per_boss_pass(r)
                old.append((time.perf_counter() - started) * 1000)
    finally:
        _drop(r, active_ids + idle_ids)
    p50_old, p50_new = percentile(old, 50), percentile(new, 50)
    return PassRow(
        active,
        idle,
        len(new),
        round(p50_old, 2),
        _pct(old, 99),
        round(p50_new, 2),
        _pct(new, 99),
        round(p50_old / p50_new, 1) if p50_new else 0.0,
    )


@dataclass
class CadenceRow:
    """The dirty pass on a real cadence, with load from another process."""

    active: int
    idle: int
    seconds: float
    ticks: int
    pass_p99_ms: float
    interval_p99_ms: float
    freshness_p50_ms: float
    freshness_p99_ms: float
    probes: int


def _loader(redis_url: str, ids: list[int], interval_s: float, stop_at: float) -> None:
    """Another process: one delta per boss per interval (stands in for the gateways)."""
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    seqs: dict[int, int] = {}
    next_at = time.monotonic()
    while time.monotonic() < stop_at:
        _damage(r, ids, seqs)
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))


def _probe(probe_id: int, interval_s: float, stop: threading.Event, fresh: list[float]) -> None:
    """A thread: one delta to ``probe_id`` at a random moment of each interval, then the time
    until the state message that carries it arrives on its subscriber (into ``fresh``, ms)."""
    import json

    from core import authority, keys
    from core.redis import get_redis

    client = get_redis()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.state_channel(probe_id))
    seq = 0
    while not stop.is_set():
        time.sleep(random.uniform(0, interval_s))
        seq += 1
        out = authority.run(
            client,
            authority.ingest_call(boss_id=probe_id, shard_key=SHARD, epoch=EPOCH, seq=seq, amount=1),
        )
        acked = time.perf_counter()
        deadline = acked + 5.0
        while out.code == "ok" and time.perf_counter() < deadline and not stop.is_set():
            message = pubsub.get_message(timeout=0.5)
            if message and json.loads(message["data"]).get("type") == "state":
                fresh.append((time.perf_counter() - acked) * 1000)
                break
    pubsub.close()


def _tick_on_cadence(interval_s: float, stop_at: float) -> tuple[list[float], list[float]]:
    """The dirty pass every ``interval_s`` until ``stop_at``; returns pass durations (ms) and
    start times (s)."""
    from bosses.services import boss_tick_all

    durations: list[float] = []
    starts: list[float] = []
    next_at = time.perf_counter()
    while time.monotonic() < stop_at:
        starts.append(time.perf_counter())
        boss_tick_all()
        durations.append((time.perf_counter() - starts[-1]) * 1000)
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.perf_counter()))
        next_at = max(next_at, time.perf_counter() - interval_s)
    return durations, starts


def cadence(*, active: int, idle: int, seconds: float, interval_ms: int, id_base: int) -> CadenceRow:
    """Run the dirty pass every ``interval_ms`` under load; measure interval and freshness."""
    from core.redis import authority_url, get_redis

    r = get_redis()
    probe_id = id_base
    loaded = list(range(id_base + 1, id_base + active))
    idle_ids = list(range(id_base + active, id_base + active + idle))
    _seed(r, [probe_id, *loaded, *idle_ids])
    interval_s = interval_ms / 1000
    stop_at = time.monotonic() + seconds
    loader = multiprocessing.get_context("spawn").Process(
        target=_loader, args=(authority_url(), loaded, interval_s, stop_at), daemon=True
    )
    fresh: list[float] = []
    stop = threading.Event()
    try:
        loader.start()
        prober = threading.Thread(target=_probe, args=(probe_id, interval_s, stop, fresh), daemon=True)
        prober.start()
        durations, starts = _tick_on_cadence(interval_s, stop_at)
        stop.set()
        prober.join(timeout=10)
        loader.join(timeout=10)
    finally:
        stop.set()
        if loader.is_alive():
            loader.kill()
        _drop(r, [probe_id, *loaded, *idle_ids])
    intervals = [(b - a) * 1000 for a, b in zip(starts, starts[1:], strict=False)]
    return CadenceRow(
        active,
        idle,
        seconds,
        len(starts),
        _pct(durations, 99),
        _pct(intervals, 99),
        _pct(fresh, 50),
        _pct(fresh, 99),
        len(fresh),
    )


SCENARIOS = [(100, 0), (1_000, 0), (2_000, 0), (0, 10_000), (2_000, 10_000)]
SMOKE_SCENARIOS = [(20, 0), (0, 50), (20, 50)]


def bosses_bench(
    *, mode: str, seconds: float, interval_ms: int, id_base: int, progress, run_dir=None
) -> dict[str, Any]:
    """Both tables for every scenario (smaller ones in smoke mode), and the dirty pass on a
    3-master cluster side by side with one Redis (when ``run_dir`` is given)."""
    scenarios = SMOKE_SCENARIOS if mode == "smoke" else SCENARIOS
    rounds = {"full": 20, "quick": 6, "smoke": 2}[mode]
    passes, cadences = [], []
    for active, idle in scenarios:
        progress(f"bosses: {active} active + {idle} idle: passes side by side")
        row = compare_passes(
            active=active, idle=idle, rounds=rounds, id_base=id_base, budget_s=ROUNDS_BUDGET_S[mode]
        )
        passes.append(asdict(row))
        if active:
            progress(f"bosses: {active} active + {idle} idle: {seconds:g} s at {interval_ms} ms")
            cadences.append(
                asdict(
                    cadence(
                        active=active, idle=idle, seconds=seconds, interval_ms=interval_ms, id_base=id_base
                    )
                )
            )
    cluster = None
    if run_dir is not None:
        cluster = asdict(
            cluster_compare(
                active=20 if mode == "smoke" else 2_000,
                rounds=rounds,
                id_base=id_base,
                run_dir=run_dir,
                progress=progress,
            )
        )
    return {"passes": passes, "cadence": cadences, "cluster": cluster}


@dataclass
class ClusterRow:
    """The dirty pass on one Redis and on a 3-master Redis Cluster, side by side."""

    active: int
    rounds: int
    single_p50_ms: float
    single_boss_ticks_per_s: float
    cluster_masters: int
    cluster_p50_ms: float
    cluster_boss_ticks_per_s: float
    cluster_boss_ticks_per_s_per_master: float
    ratio: float


def _dirty_pass_p50(*, active: int, rounds: int, id_base: int) -> float:
    from bosses.services import boss_tick_all
    from core.redis import get_redis

    r = get_redis()
    ids = list(range(id_base, id_base + active))
    _seed(r, ids)
    seqs: dict[int, int] = {}
    took: list[float] = []
    try:
        for _ in range(rounds):
            _damage(r, ids, seqs)
            started = time.perf_counter()
            boss_tick_all()
            took.append((time.perf_counter() - started) * 1000)
    finally:
        _drop(r, ids)
    return percentile(took, 50)


def cluster_compare(*, active: int, rounds: int, id_base: int, run_dir, progress) -> ClusterRow:
    """The same dirty pass (``active`` bosses, one delta each per round) on the bench's Redis
    and on a local 3-master cluster started here (AOF on, loopback), in one run."""
    from core import redis as core_redis
    from tools.stack import Stack, redis_binary

    single = _dirty_pass_p50(active=active, rounds=rounds, id_base=id_base)
    found = redis_binary()
    if found is None:
        raise RuntimeError("no redis-server to start a cluster with")
    masters = 3
    # The providers themselves: handing back authority_url/topology would make them call
    # themselves once configured.
    saved_url, saved_topology = core_redis._url_provider, core_redis._topology_provider
    with Stack(run_dir=run_dir) as stack:
        ports = start_cluster(stack, "bench-cluster", found[0], run_dir=run_dir, masters=masters)
        seed_url = f"redis://127.0.0.1:{ports[0]}/0"
        progress(f"bosses: {active} active on a {masters}-master cluster")
        core_redis.configure(
            url_provider=lambda: seed_url, topology_provider=lambda: core_redis.Topology("cluster")
        )
        try:
            clustered = _dirty_pass_p50(active=active, rounds=rounds, id_base=id_base)
        finally:
            core_redis.configure(url_provider=saved_url, topology_provider=saved_topology)
    per_s = active / (clustered / 1000)
    return ClusterRow(
        active,
        rounds,
        round(single, 2),
        round(active / (single / 1000)),
        masters,
        round(clustered, 2),
        round(per_s),
        round(per_s / masters),
        round(single / clustered, 2),
    )
