"""``manage.py bench`` produces every row (run with ``--smoke``: the same sections, rows and
checks as ``--quick`` and the full run, with tiny loads); the freshness computation is exact.

Performance is never asserted here (BENCHMARKS.md holds the figures): the test checks that
every section ran, every row is there with numbers, every approach ended with an exact HP,
and that the bench kept to its own Redis databases.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
from django.conf import settings

from core import keys
from tests.support import processes
from tools.bench import bosses as bench_bosses
from tools.bench import suite
from tools.bench.freshness import FreshnessTracker
from tools.stack import url_with_db

BENCH_TIMEOUT_S = 300  # --smoke takes ~20 s on an idle machine; a busy one is slower


def _log(version: int, deltas: dict[str, int]) -> tuple[str, dict[str, str]]:
    return (f"{version}-1", {"v": str(version), "kind": "tick", "d": json.dumps(deltas)})


def test_freshness_finds_the_first_version_that_applied_each_hit():
    t = FreshnessTracker()
    # session a: hits bringing its total to 10 (t=1.0) and 25 (t=1.1); session b: 7 (t=1.05)
    t.hit("a:1", 10, at=1.0)
    t.hit("a:1", 25, at=1.1)
    t.hit("b:1", 7, at=1.05)
    recovered = keys.recovered_field("b:1")  # what a fair crash saga recovered for b:1
    log = [_log(2, {"a:1": 10}), _log(3, {"b:1": 7}), _log(4, {"a:1": 15, recovered: 3})]
    t.state(2, at=1.2)
    t.state(4, at=1.5)  # version 3 was never received: its hits count from the next state
    t.state(3, at=1.6)  # an older version arriving late changes nothing
    fresh, missing = t.compute(log)
    assert missing == 0
    assert sorted(round(f, 3) for f in fresh) == sorted([0.2, 0.4, 0.45])


def test_freshness_counts_hits_no_state_included_as_missing():
    t = FreshnessTracker()
    t.hit("a:1", 10, at=1.0)
    t.hit("a:1", 11, at=1.0)  # its delta was never drained
    t.state(2, at=1.3)
    fresh, missing = t.compute([_log(2, {"a:1": 10})])
    assert [round(f, 3) for f in fresh] == [0.3] and missing == 1


@pytest.mark.process
@pytest.mark.timeout(BENCH_TIMEOUT_S + 60)
def test_bench_produces_every_row_on_its_own_redis_dbs():
    base = settings.REDIS_URL
    sentinels = {db: f"bench-test-sentinel-{db}" for db in (0, 10)}
    for db, key in sentinels.items():
        redis.Redis.from_url(url_with_db(base, db)).set(key, "keep")

    env = processes.subprocess_env(REDIS_URL=url_with_db(base, 0))
    env.pop("DATABASE_URL")  # the bench uses its own SQLite file under .bench/
    out = subprocess.run(
        [sys.executable, "manage.py", "bench", "--smoke", "--json"],
        cwd=processes.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)

    for section in suite.SECTIONS:
        assert "error" not in report[section], (section, report[section])
    bosses = report["bosses"]
    assert [(r["active"], r["idle"]) for r in bosses["passes"]] == [
        (a, i) for a, i in bench_bosses.SMOKE_SCENARIOS
    ]
    assert all(r["per_boss_p50_ms"] > 0 and r["dirty_p50_ms"] > 0 for r in bosses["passes"])
    assert all(r["ticks"] > 3 and r["probes"] > 0 for r in bosses["cadence"])
    rows = {r["approach"].split(" ")[0]: r for r in report["lockstorm"]["rows"]}
    assert (
        set(rows) == {"delta-sync", "Redis", "PostgreSQL", "per-hit"}
        and len(report["lockstorm"]["rows"]) == 5
    )
    for r in report["lockstorm"]["rows"]:
        if r["skipped"]:
            assert r["approach"].startswith("PostgreSQL") and "not reachable" in r["skipped"]
            continue
        assert r["hits"] > 0 and r["hp_exact"] is True and r["p99_ms"] > 0 and r["ops_per_hit"] > 0
        assert r["extra"]["ratio_to_best_peer"] > 0
    assert [r["players"] for r in report["scaling"]["rows"]] == [10_000, 100_000, 1_000_000]
    assert all(r["hp_exact"] and r["authority_ops_per_s"] > 0 for r in report["scaling"]["rows"])
    ticks = report["ticks"]
    assert ticks["tick_interval"]["n"] > 5 and ticks["freshness"]["n"] > 0 and ticks["hp_exact"]
    assert report["mode"] == "smoke"
    assert sorted(r["viewers"] for r in report["fanout"]["rows"]) == suite.FANOUT_VIEWERS["smoke"]
    assert all("error" not in r and r["expected"] > 0 for r in report["fanout"]["rows"])
    for name in ("hosted", "sdk"):
        row = report["e2e"][name]
        assert "error" not in row, row
        assert row["rate"] > 0 and row["verify_ok"] and row["freshness_samples"] > 0
    assert report["e2e"]["sdk"]["hp_exact"] is True
    assert set(report["summary"]) >= {
        "ratio_to_best_peer",
        "tick_p99_ms",
        "freshness_p99_ms",
        "hosted_attacks_per_s",
        "sdk_hits_per_s",
    }
    assert report["machine"]["nproc"] and report["machine"]["redis"]
    # a smoke report says, in its table, that its figures measure nothing
    assert "Smoke run" in suite.report_markdown(report)

    # the bench flushed only its own dbs (13-15)
    for db, key in sentinels.items():
        client = redis.Redis.from_url(url_with_db(base, db))
        assert client.get(key) == b"keep"
        client.delete(key)
