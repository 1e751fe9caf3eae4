"""The authority behind Redis Sentinel follows a failover (docs/topologies.md).

A master, a replica and three sentinels on loopback (tests/support/topologies.py); the
platform is configured with ``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER`` only. A real
Celery worker and beat tick, a live uvicorn serves a viewer on ``/ws/bosses/<slug>/``. The
master is killed with ``kill -9``; the sentinels promote the replica; ingest and ticks go on
on the new master and the hub's viewer gets states again, ending on the exact HP.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis
from django.conf import settings

from bosses.models import BossEncounter
from bosses.selectors import boss_state
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core.errors import AuthorityUnavailable
from tests.e2e.test_live_fight import Watch, watch_boss
from tests.support import processes
from tests.support.authority import delta_ingest
from tests.support.topologies import SENTINEL_MASTER, start_sentinel_setup, topology_env, use_topology
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clean_redis():
    """The Sentinel setup is new per test; only the broker (the worker's Redis) is emptied."""
    client = redis.Redis.from_url(settings.BROKER_URL)
    client.flushdb()
    client.close()
    yield


@pytest.fixture
def sentinel_setup():
    setup = start_sentinel_setup()
    try:
        yield setup
    finally:
        setup.stop()


def test_authority_and_hub_follow_a_sentinel_failover(sentinel_setup, make_boss, make_session):
    env = topology_env(
        redis_url=settings.REDIS_URL,  # not used by the authority with Sentinel
        broker_url=settings.BROKER_URL,
        REDIS_SENTINELS=sentinel_setup.addresses,
        REDIS_SENTINEL_MASTER=SENTINEL_MASTER,
    )
    with use_topology(env):
        boss = make_boss(max_hp=1_000_000)
        boss_go_live(boss=boss)
        s = make_session()
        procs = [processes.start_worker(), processes.start_beat()]
        server, port = processes.start_server()
        procs.append(server)
        watch = Watch("viewer")
        stop = threading.Event()
        viewer = threading.Thread(
            target=_watch_in_thread, args=(f"ws://127.0.0.1:{port}", boss.slug, watch, stop)
        )
        viewer.start()
        try:

            def hit(seq: int, amount: int):
                return delta_ingest(
                    boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount
                )

            hit(1, 100)
            wait_until(
                lambda: watch.last.get("hp") == boss.max_hp - 100, what="the viewer to see the first tick"
            )
            # Asynchronous replication: make sure the replica has the acknowledged write
            # before the master dies (AUTHORITY_DURABILITY=replica does this on every ack).
            master = sentinel_setup.master.client()
            assert master.wait(1, 2_000) == 1
            master.close()
            killed_at = time.monotonic()
            sentinel_setup.master.kill9()
            wait_until(
                lambda: sentinel_setup.current_master_port() == sentinel_setup.replica.port,
                what="the sentinels to promote the replica",
                timeout_s=30,
            )
            promoted_s = time.monotonic() - killed_at
            wait_until(lambda: _ingest_ok(hit, 2, 50), what="ingest on the new master", timeout_s=30)
            hit(3, 25)
            wait_until(
                lambda: watch.last.get("hp") == boss.max_hp - 175,
                what="the viewer to get states from the new master",
                timeout_s=30,
            )
            recovered_s = time.monotonic() - killed_at
        finally:
            stop.set()
            viewer.join(10)
            for proc in reversed(procs):
                proc.stop()
        assert boss_state(boss_id=boss.pk).hp == boss.max_hp - 175
        assert watch.versions == sorted(set(watch.versions)), watch.versions
        report = boss_verify(boss=BossEncounter.objects.get(pk=boss.pk))
        assert report.ok, report.problems
        assert report.accepted == 175 and report.hp == boss.max_hp - 175
        print(
            f"\nsentinel failover: promoted after {promoted_s:.1f} s, viewer on the new master's state after {recovered_s:.1f} s"
        )


def _watch_in_thread(ws_base: str, slug: str, watch: Watch, stop: threading.Event) -> None:
    async def run() -> None:
        done = asyncio.Event()

        async def poll_stop() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()

        poller = asyncio.create_task(poll_stop())
        await watch_boss(ws_base, slug, watch, done)
        await poller

    asyncio.run(run())


def _ingest_ok(hit, seq: int, amount: int) -> bool:
    try:
        hit(seq, amount)
        return True
    except AuthorityUnavailable:
        return False
