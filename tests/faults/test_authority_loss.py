"""The authority's Redis killed, wiped or rolled back mid-fight, with real processes around it
(docs/durability.md).

Each test starts its own Redis (AOF, fsync always: ``tools.stack.redis_server_argv``) and a
real uvicorn, Celery worker and beat on it; SDK game servers (``tests/faults/sdk_proc.py``, the
real SDK as its own process) and hosted players (WebSockets from this process) attack the
whole time. Every acknowledged point of damage must be applied exactly once, every process of
the platform must still run, and ``verify_boss`` must be OK.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from websockets.asyncio.client import connect

from bosses.models import BossEncounter, SagaKind, SagaRun, SagaStatus
from bosses.selectors import boss_sagas_running
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from shards.services import shard_create
from tests.faults.conftest import FAST
from tests.support import processes
from tests.support.redis_servers import RedisServer, redis_server_binary
from tests.support.topologies import SENTINEL_MASTER, start_sentinel_setup, topology_env, use_topology
from tests.support.waiting import WaitTimeout, wait_until

pytestmark = [
    pytest.mark.process,
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

HOSTED_SHARD = "loss-h1"
PLAYERS = 3
ATTACK_EVERY_S = 0.05
# The archive (and the restore check with it) runs every ARCHIVE_INTERVAL_MS.
ENV = {**FAST, "ARCHIVE_INTERVAL_MS": "500"}


class Authority:
    """The authority's Redis of one test: killed and restarted on the same data dir."""

    def __init__(self) -> None:
        self.server = RedisServer(redis_server_binary())
        self.port = self.server.port

    def kill9(self) -> None:
        self.server.popen.send_signal(signal.SIGKILL)
        self.server.popen.wait(timeout=10)

    def restart(self) -> None:
        argv = self.server.popen.args
        self.server.popen = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_until(self._up, what="the restarted authority Redis", timeout_s=20)

    def _up(self) -> bool:
        client = self.server.client()
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()


@contextmanager
def platform_on(**topology: str):
    """uvicorn + worker + beat (and this process) on the given authority topology
    (tests/support/topologies.py); the broker stays the test's."""
    env = topology_env(broker_url=settings.BROKER_URL, **topology)
    procs: list[processes.Proc] = []
    with use_topology(env):
        try:
            # the hosted players connect with ?player=<id>: simulator mode on the server
            server, port = processes.start_server(**ENV, **env, **processes.SIMULATOR_ENV)
            procs.append(server)
            procs += [processes.start_worker(**ENV, **env), processes.start_beat(**ENV, **env)]
            yield f"ws://127.0.0.1:{port}", procs
        finally:
            for proc in reversed(procs):
                proc.stop()


class Players:
    """Hosted players attacking over real sockets in a thread; counts acknowledged damage."""

    def __init__(self, url: str, slug: str) -> None:
        self.url, self.slug = url, slug
        self.acked = 0
        self.refused: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        await asyncio.gather(*(self._player(f"loss-p{i}") for i in range(PLAYERS)))

    async def _player(self, name: str) -> None:
        while not self.stop.is_set():
            try:
                async with connect(f"{self.url}/ws/shards/{HOSTED_SHARD}/?player={name}") as ws:
                    await ws.recv()  # welcome
                    while not self.stop.is_set():
                        await ws.send(json.dumps({"type": "attack", "boss": self.slug}))
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if reply.get("type") == "attack_ack":
                            self.acked += reply["damage"]
                        else:
                            code = reply.get("code", "?")
                            self.refused[code] = self.refused.get(code, 0) + 1
                        await asyncio.sleep(ATTACK_EVERY_S)
            except Exception:
                await asyncio.sleep(0.2)

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(20)
        return self.acked


def start_fight(make_boss, url: str, sdk_procs, servers: int = 2):
    boss = make_boss(
        max_hp=10**12, crash_policy="fair", heartbeat_interval_ms=200, heartbeat_timeout_ms=3_000
    )
    boss_go_live(boss=boss)
    shard_create(key=HOSTED_SHARD, name="Hosted", kind="hosted")
    sdks = []
    for i in range(servers):
        _, token = shard_create(key=f"loss-s{i}", name=f"SDK {i}")
        proc = sdk_procs(url, f"loss-s{i}", token, boss.slug, "run")
        proc.wait_line("CONNECTED")
        sdks.append(proc)
    return boss, sdks, Players(url, boss.slug)


def finish_fight(boss, sdks, players: Players, procs) -> int:
    """Stop the attackers (SDK servers flush and leave), let every buffer land; the expected
    applied damage (everything acknowledged or generated and flushed)."""
    hosted = players.finish()
    generated = 0
    for proc in sdks:
        proc.signal(signal.SIGUSR1)
        done = proc.wait_line("DONE", timeout_s=60)
        assert done["flushed"], done
        generated += done["generated"]
    for proc in procs:
        assert proc.popen.poll() is None, f"{proc.name} died:\n{proc.output()[-3000:]}"
    expected = generated + hosted

    def settled() -> bool:
        b = BossEncounter.objects.get(pk=boss.pk)
        report = boss_verify(boss=b)
        return report.ok and report.applied == expected and not boss_sagas_running(boss_id=boss.pk)

    try:
        wait_until(settled, what="every acknowledged hit applied and verify_boss OK", timeout_s=60)
    except WaitTimeout:
        report = boss_verify(boss=BossEncounter.objects.get(pk=boss.pk))
        sagas = list(SagaRun.objects.filter(boss=boss).values_list("key", "status", "amount", "detail"))
        raise AssertionError(
            f"expected {expected} applied (hosted {hosted}, SDK {generated}); {report.as_dict()}; "
            f"refused {players.refused}; sagas {sagas}"
        ) from None
    return expected


def test_ten_kill_9s_of_the_authority_mid_fight_lose_and_double_nothing(make_boss, sdk_procs):
    authority = Authority()
    try:
        with platform_on(redis_url=authority.server.url(0)) as (url, procs):
            boss, sdks, players = start_fight(make_boss, url, sdk_procs)
            time.sleep(1.0)  # the scenario: the fight runs, then ten kills 0.4 s apart
            for _ in range(10):
                authority.kill9()
                time.sleep(0.4)
                authority.restart()
                time.sleep(0.8)
            assert players.acked > 0
            expected = finish_fight(boss, sdks, players, procs)
        assert expected > 0
        # AOF with fsync on every write: nothing acknowledged was lost, nothing to restore
        assert not SagaRun.objects.filter(boss=boss, kind=SagaKind.RESTORE).exists()
    finally:
        authority.server.stop()


def test_the_authority_wiped_mid_fight_is_restored_and_the_fight_ends_exact(make_boss, sdk_procs):
    authority = Authority()
    try:
        with platform_on(redis_url=authority.server.url(0)) as (url, procs):
            boss, sdks, players = start_fight(make_boss, url, sdk_procs)
            time.sleep(2.0)  # a few archives
            client = authority.server.client()
            client.flushall()  # total loss: every key, the live set, the shard epochs
            client.close()
            wait_until(
                lambda: SagaRun.objects.filter(
                    boss=boss, kind=SagaKind.RESTORE, status=SagaStatus.COMPLETED
                ).exists(),
                what="the restore saga",
                timeout_s=30,
            )
            time.sleep(1.5)  # the attackers go on against the restored fight
            expected = finish_fight(boss, sdks, players, procs)
        saga = SagaRun.objects.get(boss=boss, kind=SagaKind.RESTORE)
        assert saga.detail["reason"] == "lost"
        assert BossEncounter.objects.get(pk=boss.pk).authority_gen == 1
        assert expected > 0
        client = authority.server.client()
        assert client.hget(keys.BossKeys(boss.pk).state, "gen") == "1"
        client.close()
    finally:
        authority.server.stop()


def _replica_online(server) -> bool:
    client = server.client()
    try:
        info = client.info("replication")
    finally:
        client.close()
    replica = info.get("slave0")
    return info.get("role") == "master" and isinstance(replica, dict) and replica.get("state") == "online"


@pytest.mark.parametrize("durability", ["local", "replica"])
def test_a_failover_to_a_lagging_replica_loses_no_acknowledged_damage(make_boss, sdk_procs, durability):
    """The replica is cut off (SIGSTOP, its link closed) while the fight goes on, the master is
    killed, the sentinels promote the replica. ``replica``: nothing was acknowledged that the
    replica lacks (acks waited, timed out, and were re-sent). ``local``: the promoted replica is
    behind what was acknowledged; the rollback is detected (a restore from the archive, or the
    clients' seq gaps) and the re-sent deltas make the fight exact. Both end exact."""
    setup = start_sentinel_setup()
    try:
        with platform_on(
            redis_url=settings.REDIS_URL,
            REDIS_SENTINELS=setup.addresses,
            REDIS_SENTINEL_MASTER=SENTINEL_MASTER,
            AUTHORITY_DURABILITY=durability,
        ) as (url, procs):
            boss, sdks, players = start_fight(make_boss, url, sdk_procs)
            time.sleep(1.5)  # the scenario: the fight runs replicated, then the replica is cut off
            # Cut the replica off: stopped, and its replication link closed by the master (what
            # the kernel had already buffered for it still arrives; nothing written after does).
            os.kill(setup.replica.popen.pid, signal.SIGSTOP)
            master = setup.master.client()
            master.execute_command("CLIENT", "KILL", "TYPE", "replica")
            master.close()
            time.sleep(1.5)  # deltas acknowledged on the master only (local), or not at all
            setup.master.kill9()
            os.kill(setup.replica.popen.pid, signal.SIGCONT)
            wait_until(
                lambda: setup.current_master_port() == setup.replica.port,
                what="the sentinels to promote the replica",
                timeout_s=40,
            )
            # The old master comes back and the sentinels make it the new master's replica
            # (without one, 'replica' durability can acknowledge nothing).
            setup.master.restart()
            # ... once it is in sync (a full resync: its own history diverged), acks can be
            # confirmed again; a loaded machine takes seconds for that
            wait_until(
                lambda: _replica_online(setup.replica),
                what="the old master to resync as the new master's replica",
                timeout_s=60,
            )
            time.sleep(2.0)
            expected = finish_fight(boss, sdks, players, procs)
        assert expected > 0
        restores = list(
            SagaRun.objects.filter(boss=boss, kind=SagaKind.RESTORE).values_list("status", "detail")
        )
        replayed = sum(proc.lines("DONE")[-1]["replayed"] for proc in sdks)
        if durability == "replica":
            # With no replica to confirm them, deltas were refused (and re-sent later) rather
            # than acknowledged on the master alone. (A restore may still run: ticks are not
            # waited for, so the archive can hold versions the promoted replica lacks.)
            refused = sum(proc.lines("DONE")[-1]["errors"].get("authority_unavailable", 0) for proc in sdks)
            assert refused > 0
        else:
            assert restores or replayed, "the rollback was neither restored nor re-sent"
            assert all(status == SagaStatus.COMPLETED for status, _ in restores)
        print(f"\nfailover ({durability}): restores {restores}, SDK deltas re-sent {replayed}")
    finally:
        setup.stop()
