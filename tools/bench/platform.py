"""The whole platform at N live bosses: real workers and beat, every periodic task running.

``python -m tools.bench.platform --bosses 2000 --seconds 30 [--previous <git rev>]``

Each variant starts its own Celery processes on a fresh database and fresh Redis dbs (13-15
of ``--redis-url``'s server): this tree as the Procfile runs it (a ``tick`` worker on the
ticks queue, a ``worker`` on sagas, beat), and with ``--previous`` the tree of that commit
(checked out in a temporary worktree) as its Procfile ran it (one worker on ticks and sagas,
4 threads, beat), so the rows come from one run. ``N`` live bosses (SQL rows and their
seeded authority, created in bulk) are damaged once per second each by a loader thread
(pipelined ingest, one game-server session); a probe boss gets one delta a second and its
state message is awaited on pub/sub. Reported per variant:

- tick interval p99 (start to start, from ``keys.TICK_TIMES``, which the tick pass writes);
- freshness p50/p99: the probe's ingest ack to the state message that shows it;
- every acknowledged delta visible: bosses whose authoritative HP equals max HP minus what
  was acknowledged to them (after the load stops and the ticks drain), and bosses whose
  archived newest entry (SQL) shows that HP.

The SQLite database is a temporary file; ``--database-url postgres://...`` runs on
PostgreSQL (the database named there is dropped and created for each variant).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.bench.harness import live_bosses_create, percentile

ROOT = Path(__file__).resolve().parents[2]
SHARD = "bench-platform"
MAX_HP = 10**12
BATCH = 500
DRAIN_S = 60.0


@dataclass
class PlatformRow:
    variant: str
    database: str
    bosses: int
    seconds: float
    deltas_sent: int
    deltas_acked: int
    ticks: int
    tick_interval_p50_ms: float | None
    tick_interval_p99_ms: float | None
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    probes: int
    probes_seen: int
    hp_exact_bosses: int
    archived_exact_bosses: int
    loadavg_start: str
    loadavg_end: str


def _pct(values: list[float], p: float) -> float | None:
    return round(percentile(values, p), 1) if values else None


def _create_bosses(n: int) -> list[int]:
    """``n`` live bosses (the last one the probe's), as ``boss_go_live`` leaves them."""
    tag = uuid.uuid4().hex[:6]
    made = live_bosses_create(
        count=n, slug_prefix=f"p-{tag}-", name_prefix="P ", max_hp=MAX_HP, min_tick_ms=80, batch=BATCH
    )
    return [b.pk for b in made]


class _Load:
    """Loader (one delta per boss per second) and probe (one delta a second, awaited)."""

    def __init__(self, ids: list[int], epoch: int) -> None:
        self.ids, self.probe = ids[:-1], ids[-1]
        self.epoch = epoch
        self.seq: dict[int, int] = {}
        self.acked: dict[int, int] = {}
        self.sent = 0
        self.acked_count = 0
        self.fresh: list[float] = []
        self.probes = 0
        self.stop = threading.Event()

    def _ingest(self, r, boss_ids: list[int], amount: int) -> list[float]:
        from core import authority

        calls = []
        for boss_id in boss_ids:
            self.seq[boss_id] = self.seq.get(boss_id, 0) + 1
            calls.append(
                authority.ingest_call(
                    boss_id=boss_id, shard_key=SHARD, epoch=self.epoch, seq=self.seq[boss_id], amount=amount
                )
            )
        outs = authority.run_many(r, calls)
        now = time.monotonic()
        self.sent += len(calls)
        for boss_id, out in zip(boss_ids, outs, strict=True):
            if not isinstance(out, Exception) and out.code == "ok":
                self.acked[boss_id] = self.acked.get(boss_id, 0) + amount
                self.acked_count += 1
            else:
                self.seq[boss_id] -= 1  # not taken: the next delta reuses the seq
        return [now]

    def loader(self) -> None:
        from core.redis import get_redis

        r = get_redis()
        while not self.stop.is_set():
            started = time.monotonic()
            for start in range(0, len(self.ids), BATCH):
                self._ingest(r, self.ids[start : start + BATCH], 7)
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def prober(self) -> None:
        from core import keys
        from core.redis import get_redis

        r = get_redis()
        pubsub = r.pubsub()
        pubsub.subscribe(keys.state_channel(self.probe))
        pubsub.get_message(timeout=1.0)
        while not self.stop.is_set():
            self.probes += 1
            [acked_at] = self._ingest(r, [self.probe], 1)
            want = MAX_HP - self.acked.get(self.probe, 0)
            deadline = acked_at + 5.0
            while time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=0.5)
                if msg and msg.get("type") == "message":
                    body = json.loads(msg["data"])
                    if int(body.get("hp", MAX_HP)) <= want:
                        self.fresh.append((time.monotonic() - acked_at) * 1000)
                        break
            self.stop.wait(0.5)
        pubsub.close()


def _exact(load: _Load, ids: list[int]) -> tuple[int, int]:
    """Bosses whose authority HP, and whose archived newest entry, show every ack."""
    from bosses.models import BossEvent
    from core import keys
    from core.redis import get_redis

    r = get_redis()
    want = {i: MAX_HP - load.acked.get(i, 0) for i in ids}
    deadline = time.monotonic() + DRAIN_S
    hp_ok = arch_ok = 0
    while time.monotonic() < deadline:
        pipe = r.pipeline(transaction=False)
        for i in ids:
            pipe.hget(keys.BossKeys(i).state, "hp")
        hps = dict(zip(ids, (int(h or 0) for h in pipe.execute()), strict=True))
        hp_ok = sum(1 for i in ids if hps[i] == want[i])
        tops: dict[int, tuple[int, int]] = {}
        for boss_id, version, hp in BossEvent.objects.values_list("boss_id", "version", "hp"):
            if boss_id not in tops or version > tops[boss_id][0]:
                tops[boss_id] = (version, hp)
        arch_ok = sum(1 for i in ids if tops.get(i, (0, -1))[1] == want[i])
        if hp_ok == arch_ok == len(ids):
            break
        time.sleep(2.0)
    return hp_ok, arch_ok


def _tick_intervals(since_ms: int, until_ms: int) -> list[float]:
    from core import keys
    from core.redis import get_redis

    starts = sorted(int(t) for t in get_redis().lrange(keys.TICK_TIMES, 0, -1))
    starts = [t for t in starts if since_ms <= t <= until_ms]
    return [float(b - a) for a, b in zip(starts, starts[1:], strict=False)]


def _processes(stack, variant: str, tree: Path) -> None:
    from tools.stack import ManagedProcess, celery_beat_argv, celery_worker_argv

    def start(name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(
            name, argv, env=dict(stack.env), log_path=stack.run_dir / f"{name}.log", cwd=tree
        )
        stack.procs.append(proc)
        return proc

    if variant == "previous":
        start("worker", [*celery_worker_argv(queues="ticks,sagas", concurrency=4), "-n", "prev@%h"])
    else:
        start("tick", [*celery_worker_argv(queues="ticks", concurrency=2), "-n", "tick@%h"])
        start("worker", [*celery_worker_argv(queues="sagas", concurrency=4), "-n", "sagas@%h"])
    for leftover in stack.run_dir.glob("celerybeat-schedule*"):
        leftover.unlink()
    start("beat", celery_beat_argv(schedule=stack.run_dir / "celerybeat-schedule"))
    for proc in stack.procs:
        proc.wait_for_output("ready." if proc.name != "beat" else "beat: Starting")


def _fresh_database(url: str | None) -> tuple[str, str]:
    if not url:
        path = Path(tempfile.mkdtemp(prefix="platform-bench-")) / "bench.sqlite3"
        return f"sqlite:///{path}", "SQLite"
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url, "PostgreSQL"


def variant_env(*, redis_url: str, database_url: str | None) -> tuple[dict[str, str], str]:
    """A fresh database (migrated) and flushed Redis dbs 13-15 for one variant."""
    import redis as redis_lib

    from tools.stack import url_with_db

    db_url, db_name = _fresh_database(database_url)
    env = {
        "REDIS_URL": url_with_db(redis_url, 13),
        "BROKER_URL": url_with_db(redis_url, 14),
        "CHANNELS_URL": url_with_db(redis_url, 15),
        "DATABASE_URL": db_url,
        "SYNC_TICK_INTERVAL_MS": "100",
        "LOG_LEVEL": "WARNING",
    }
    for db in (13, 14, 15):
        redis_lib.Redis.from_url(url_with_db(redis_url, db)).flushdb()
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env, db_name


def run_variant(*, variant: str, tree: Path, bosses: int, seconds: float, database: str) -> PlatformRow:
    """One row, in a process whose environment names the variant's database and Redis."""
    from shards.services import shard_create, shard_session_open
    from tools.stack import Stack

    shard = shard_create(key=SHARD, name=SHARD)[0]
    epoch = shard_session_open(shard=shard).epoch
    ids = _create_bosses(bosses)
    load = _Load(ids, epoch)
    env = {
        k: os.environ[k]
        for k in (
            "REDIS_URL",
            "BROKER_URL",
            "CHANNELS_URL",
            "DATABASE_URL",
            "SYNC_TICK_INTERVAL_MS",
            "LOG_LEVEL",
        )
    }
    with Stack(run_dir=ROOT / ".bench" / f"platform-{variant}", env=env) as stack:
        _processes(stack, variant, tree)
        la0 = " ".join(f"{x:.1f}" for x in os.getloadavg())
        since = int(time.time() * 1000) + 2_000
        threads = [threading.Thread(target=load.loader), threading.Thread(target=load.prober)]
        for t in threads:
            t.start()
        time.sleep(seconds + 2)
        load.stop.set()
        for t in threads:
            t.join()
        until = int(time.time() * 1000)
        la1 = " ".join(f"{x:.1f}" for x in os.getloadavg())
        intervals = _tick_intervals(since, until)
        hp_ok, arch_ok = _exact(load, ids)
    return PlatformRow(
        variant,
        database,
        bosses,
        seconds,
        load.sent,
        load.acked_count,
        len(intervals) + 1,
        _pct(intervals, 50),
        _pct(intervals, 99),
        _pct(load.fresh, 50),
        _pct(load.fresh, 99),
        load.probes,
        len(load.fresh),
        hp_ok,
        arch_ok,
        la0,
        la1,
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| variant | database | live bosses | ticks | tick interval p50 / p99 | freshness p50 / p99 | "
        "deltas acked / sent | HP exact | archive exact | load avg start / end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['variant']} | {r['database']} | {r['bosses']:,} | {r['ticks']} | "
            f"{r['tick_interval_p50_ms']} / {r['tick_interval_p99_ms']} ms | "
            f"{r['freshness_p50_ms']} / {r['freshness_p99_ms']} ms ({r['probes_seen']}/{r['probes']}) | "
            f"{r['deltas_acked']:,} / {r['deltas_sent']:,} | {r['hp_exact_bosses']:,} / {r['bosses']:,} | "
            f"{r['archived_exact_bosses']:,} / {r['bosses']:,} | {r['loadavg_start']} / {r['loadavg_end']} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bosses", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--previous", help="git revision of the previous code, run side by side")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--database-url", default=None, help="postgres://.../<db> (dropped and created)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "TREE", "DATABASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
    if args.child:
        import django

        django.setup()
        variant, tree, database = args.child
        row = run_variant(
            variant=variant, tree=Path(tree), bosses=args.bosses, seconds=args.seconds, database=database
        )
        print("ROW " + json.dumps(asdict(row)), flush=True)
        return
    variants = [("now", ROOT)]
    worktree = None
    if args.previous:
        worktree = Path(tempfile.mkdtemp(prefix="platform-previous-")) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.previous], check=True
        )
        variants.insert(0, ("previous", worktree))
    rows = []
    try:
        for name, tree in variants:
            print(f"platform: {name}, {args.bosses} bosses, {args.seconds:g} s", flush=True)
            env, db_name = variant_env(redis_url=args.redis_url, database_url=args.database_url)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tools.bench.platform",
                    "--bosses",
                    str(args.bosses),
                    "--seconds",
                    str(args.seconds),
                    "--child",
                    name,
                    str(tree),
                    db_name,
                ],
                env={**os.environ, **env},
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            row = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("ROW "))[4:])
            print(row, flush=True)
            rows.append(row)
    finally:
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False
            )
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
