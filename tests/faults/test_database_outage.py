"""PostgreSQL stopped under a live fight: the hot path runs on Redis alone (docs/faults.md).

The whole stack on a PostgreSQL cluster of the test's own (tests/support/pg_cluster.py):
uvicorn, a Celery worker and beat (crash scan every 200 ms), two game servers on the real SDK
(tests/faults/sdk_proc.py, ``players`` mode), a viewer socket. The cluster is stopped for
``OUTAGE_S`` (longer than the gateway's 5 s boss cache and than the boss's heartbeat
timeout), then started again. Meanwhile:

* the first game server's damage keeps being acknowledged, also after its socket is dropped
  and it resumes its session on a new one (the Redis copy of its identity);
* the second one is stopped (SIGSTOP) for the whole outage and continued once a crash scan
  has completed after the restart: silent by its stamp far past the timeout, but the scan
  was blind meanwhile, so it is not fenced (the boss is *harsh*: a fence would discard);
* the viewer's state versions keep rising; ``/readyz`` answers 200 ``degraded``; the state
  API answers from the authority.

After the restart nothing is fenced, every point generated is applied (per player too) and
``verify_boss`` holds; the longest time without an ack is printed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import websockets

from core import keys
from core.redis import get_redis
from tests.faults.conftest import FAST, SdkProcess
from tests.support import processes
from tests.support.pg_cluster import PgCluster
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault, pytest.mark.timeout(300)]

OUTAGE_S = 8.0  # > the gateway's boss cache (5 s) and > HEARTBEAT_TIMEOUT_MS
HEARTBEAT_TIMEOUT_MS = 2_000
MAX_HP = 50_000_000

SETUP = """
import json
from bosses.models import BossEncounter
from bosses.services import boss_go_live
from shards.services import shard_create
boss = BossEncounter.objects.create(
    name="Outage", slug="outage", max_hp={max_hp}, crash_policy="harsh",
    heartbeat_interval_ms=100, heartbeat_timeout_ms={timeout},
)
boss_go_live(boss=boss)
tokens = {{key: shard_create(key=key, name=key)[1] for key in ("steady", "sleepy")}}
print("SETUP " + json.dumps({{"id": boss.pk, "tokens": tokens}}))
"""

SAGAS = """
import json
from bosses.models import SagaRun
print("SAGAS " + json.dumps([[s.shard_key, s.epoch, s.detail.get("reason"), s.amount] for s in SagaRun.objects.filter(kind="crash")]))
"""


def manage(database_url: str, *argv: str) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=processes.ROOT,
        env=processes.subprocess_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def shell(database_url: str, code: str, word: str):
    out = manage(database_url, "shell", "-c", code)
    [line] = [line for line in out.splitlines() if line.startswith(word + " ")]
    return json.loads(line.split(" ", 1)[1])


def http(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


class Viewer:
    """A /ws/bosses/<slug>/ socket on a thread of its own: the versions it saw, when."""

    def __init__(self, url: str):
        self.url = url
        self.versions: list[tuple[float, int]] = []
        self.closed: list[object] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        async with websockets.connect(self.url) as ws:
            while not self._stop.is_set():
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                except websockets.ConnectionClosed as exc:
                    self.closed.append(exc)
                    return
                if msg["type"] == "state":
                    self.versions.append((time.monotonic(), msg["version"]))

    def newest(self) -> int:
        return self.versions[-1][1] if self.versions else 0

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def latest(proc: SdkProcess) -> dict:
    rows = proc.lines("PROGRESS")
    return rows[-1] if rows else {"acked": 0, "connects": 0, "fences": 0}


def test_postgres_outage_keeps_the_fight_going_and_fences_nothing(pg_cluster: PgCluster):
    db_url = pg_cluster.create_database("outage")
    manage(db_url, "migrate", "-v0")
    setup = shell(db_url, SETUP.format(max_hp=MAX_HP, timeout=HEARTBEAT_TIMEOUT_MS), "SETUP")
    boss_id, tokens = setup["id"], setup["tokens"]
    env = {"DATABASE_URL": db_url, **FAST}
    procs: list[processes.Proc] = []
    viewer = None
    try:
        server, port = processes.start_server(**env)
        procs += [server, processes.start_worker(**env), processes.start_beat(**env)]
        base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        steady = SdkProcess(ws_url, "steady", tokens["steady"], "outage", "players", **env)
        sleepy = SdkProcess(ws_url, "sleepy", tokens["sleepy"], "outage", "players", **env)
        procs += [steady, sleepy]
        viewer = Viewer(f"{ws_url}/ws/bosses/outage/")
        for proc in (steady, sleepy):
            wait_until(lambda proc=proc: latest(proc)["acked"] > 500, timeout_s=30, what="acks")
        wait_until(lambda: viewer.newest() > 1, what="the viewer's first states")

        # --- the outage ---
        pg_cluster.stop()
        stopped = time.monotonic()
        sleepy.signal(signal.SIGSTOP)
        acked_at_stop, version_at_stop = latest(steady)["acked"], viewer.newest()
        status, body = http(f"{base}/readyz")
        assert (status, body["status"], body["checks"]["database"]["status"]) == (200, "degraded", "fail"), (
            body
        )
        status, body = http(f"{base}/api/bosses/outage/state")
        assert status == 200 and body["status"] == "live", body
        steady.signal(signal.SIGUSR2)  # its socket drops: it must resume without the database
        wait_until(lambda: latest(steady)["connects"] >= 2, what="the resumed session")
        # Past the boss cache's 5 s and the heartbeat timeout, acks and states go on.
        wait_until(lambda: time.monotonic() - stopped >= OUTAGE_S, timeout_s=OUTAGE_S + 5, what="the outage")
        during, version_at_end = latest(steady), viewer.newest()
        assert during["acked"] > acked_at_stop + 1000 and during["fences"] == 0, during
        assert viewer.newest() > version_at_stop + 10 and not viewer.closed
        status, body = http(f"{base}/api/bosses/outage/state")
        assert status == 200 and body["version"] > version_at_stop, body

        # --- the database is back ---
        restarted_ms = int(get_redis().time()[0] * 1000)
        pg_cluster.start()
        r = get_redis()
        wait_until(
            lambda: int(r.get(keys.CRASH_SCAN_LAST) or 0) > restarted_ms,
            timeout_s=30,
            what="a completed scan",
        )
        sleepy.signal(signal.SIGCONT)
        acked_sleepy = latest(sleepy)["acked"]
        wait_until(lambda: latest(sleepy)["acked"] > acked_sleepy + 500, timeout_s=30, what="sleepy's acks")
        wait_until(lambda: http(f"{base}/readyz")[1].get("status") == "ok", timeout_s=30, what="/readyz ok")

        done = {}
        for proc in (steady, sleepy):
            proc.signal(signal.SIGUSR1)
        for name, proc in (("steady", steady), ("sleepy", sleepy)):
            done[name] = proc.wait_line("DONE", timeout_s=60)
            assert done[name]["flushed"] and done[name]["fences"] == 0, done[name]
        k = keys.BossKeys(boss_id)
        wait_until(lambda: r.hlen(k.buf) == 0, timeout_s=30, what="the tick drains")
        sagas = shell(db_url, SAGAS, "SAGAS")
        assert all(reason == "left" for _, _, reason, _ in sagas), sagas  # only the two byes
        generated = sum(d["generated"] for d in done.values())
        report = json.loads(manage(db_url, "verify_boss", "outage", "--json"))
        assert report["ok"], report["problems"]
        assert report["accepted"] == report["applied"] == generated and report["discarded"] == 0
        expected = {p: n for d in done.values() for p, n in d["per_player"].items()}
        assert {p: int(v) for p, v in r.hgetall(k.players).items()} == expected
        print(
            "\nDATABASE OUTAGE",
            json.dumps(
                {
                    "outage_s": OUTAGE_S,
                    "longest_without_acks_s": done["steady"]["longest_gap_s"],
                    "acked_during_outage": during["acked"] - acked_at_stop,
                    "viewer_versions_during_outage": version_at_end - version_at_stop,
                    "generated": generated,
                }
            ),
        )
    finally:
        if viewer is not None:
            viewer.stop()
        for proc in reversed(procs):
            proc.signal(signal.SIGCONT)
            proc.discard()
