"""The platform on a real 3-master Redis Cluster (docs/topologies.md).

1. A whole fight: three bosses whose slots are on the three masters, hosted players and SDK
   game servers attacking through a live uvicorn, a real Celery worker and beat ticking
   (sharded pub/sub to the hub), viewers on ``/ws/bosses/<slug>/`` ending on the final
   version, exact HP and ``verify_boss`` OK for every boss.
2. ``kill -9`` of one master mid-fight (AOF on): the other masters' bosses keep ticking, the
   lost master's boss answers ``authority_unavailable``, and after a restart on the same
   data dir it resumes exactly (a re-sent delta is accepted once, the HP is exact).

The cluster is started by the test on loopback ports (tests/support/topologies.py); the
broker stays on the worker's standalone Redis, as production needs (kombu has no cluster
transport).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from django.conf import settings

from bosses.models import BossEncounter
from bosses.selectors import boss_sagas_running, boss_state
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from core.errors import AuthorityUnavailable
from core.redis import get_redis
from shards.services import shard_create
from tests.e2e.test_live_fight import Watch, game_server, player, watch_boss
from tests.support import processes
from tests.support.authority import delta_ingest
from tests.support.topologies import Cluster, start_cluster, topology_env, use_topology
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

FIGHT_TIMEOUT_S = 40


@pytest.fixture
def cluster():
    c = start_cluster(3)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(autouse=True)
def clean_redis():
    """The cluster is new per test; only the broker (the worker's own Redis) needs emptying."""
    client = redis.Redis.from_url(settings.BROKER_URL)
    client.flushdb()
    client.close()
    yield


@pytest.fixture
def on_cluster(cluster):
    env = topology_env(redis_url=cluster.url, broker_url=settings.BROKER_URL, REDIS_CLUSTER="1")
    with use_topology(env):
        yield cluster


def bosses_on_every_master(cluster: Cluster, make_boss, **fields) -> list[BossEncounter]:
    """Create bosses until one sits on each master (a boss's slot is its bucket's)."""
    by_port: dict[int, BossEncounter] = {}
    for _ in range(12):
        boss = make_boss(**fields)
        by_port.setdefault(cluster.node_of(keys.BossKeys(boss.pk).state).port, boss)
        if len(by_port) == len(cluster.nodes):
            return list(by_port.values())
    raise AssertionError(f"12 bosses did not cover the {len(cluster.nodes)} masters: {sorted(by_port)}")


def test_full_fight_on_a_three_master_cluster(on_cluster, make_boss):
    started = time.monotonic()
    bosses = bosses_on_every_master(
        on_cluster, make_boss, max_hp=40_000, min_damage=50, max_damage=150, attacks_per_second=20
    )
    tokens = {}
    for boss in bosses:
        shard_create(key=f"h{boss.pk}", name=f"hosted {boss.pk}", kind="hosted")
        tokens[boss.slug] = (f"g{boss.pk}", shard_create(key=f"g{boss.pk}", name=f"gs {boss.pk}")[1])
    procs = [processes.start_worker(), processes.start_beat()]
    server, port = processes.start_server(**processes.SIMULATOR_ENV)  # players use ?player=
    procs.append(server)
    try:
        for boss in bosses:
            boss_go_live(boss=boss)
        watches = asyncio.run(_fight(f"ws://127.0.0.1:{port}", bosses, tokens))
        wait_until(
            lambda: all(boss_sagas_running(boss_id=b.pk) == 0 for b in bosses),
            what="the sagas of the fights to finish",
        )
    finally:
        for proc in reversed(procs):
            proc.stop()
    r = get_redis()
    for boss in bosses:
        final = boss_state(boss_id=boss.pk)
        assert final.status == "defeated" and final.hp == 0, final
        for w in watches[boss.slug]:
            assert w.versions == sorted(set(w.versions)), f"{w.name}: versions not strictly increasing"
            assert w.last["version"] == final.version, (w.name, w.last, final)
            assert len(w.versions) > 3, (w.name, w.versions)
        report = boss_verify(boss=BossEncounter.objects.get(pk=boss.pk))
        assert report.ok, (boss.slug, report.problems)
        assert report.hp == 0 and report.applied == boss.max_hp  # exact: nothing lost or doubled
        assert int(r.hget(keys.BossKeys(boss.pk).state, "applied")) == boss.max_hp
    elapsed = time.monotonic() - started
    print(f"\ncluster fight: 3 bosses on 3 masters defeated, verify_boss OK, {elapsed:.1f} s")


async def _fight(ws_base: str, bosses: list[BossEncounter], tokens: dict) -> dict[str, list[Watch]]:
    stop, done = asyncio.Event(), asyncio.Event()
    watches = {b.slug: [Watch(f"{b.slug}-viewer-{i}") for i in range(2)] for b in bosses}
    tasks = [asyncio.create_task(watch_boss(ws_base, s, w, stop)) for s, ws in watches.items() for w in ws]
    await asyncio.sleep(0.5)
    acked: dict[str, int] = {}
    refused: dict[str, int] = {}
    sdks: dict = {}
    fighters = [
        asyncio.create_task(player(ws_base, f"h{b.pk}", f"p{b.pk}", b.slug, acked, refused, done))
        for b in bosses
    ]
    fighters += [
        asyncio.create_task(game_server(ws_base, tokens[b.slug][0], tokens[b.slug][1], b.slug, sdks, done))
        for b in bosses
    ]
    deadline = time.monotonic() + FIGHT_TIMEOUT_S
    while not all(any(w.last.get("status") == "defeated" for w in ws) for ws in watches.values()):
        assert time.monotonic() < deadline, (
            f"not every boss died in time: {[(s, ws[0].last) for s, ws in watches.items()]}, refused {refused}"
        )
        for t in fighters:
            if t.done() and t.exception():
                raise t.exception()
        await asyncio.sleep(0.1)
    done.set()
    await asyncio.gather(*fighters)
    settle = time.monotonic() + 5
    while time.monotonic() < settle:
        if all(w.last.get("status") == "defeated" for ws in watches.values() for w in ws):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a straggling final state would show up as a version mismatch
    stop.set()
    await asyncio.gather(*tasks)
    for client in sdks.values():
        await client.stop(timeout_s=2)
    assert set(refused) <= {"not_live", "rate_limited"}, refused
    return watches


def test_kill_9_of_one_master_mid_fight(on_cluster, make_boss, make_session):
    # these sessions send no heartbeats: a long timeout keeps the crash scan from fencing them
    # while the lost master is down for as long as a loaded machine takes
    bosses = bosses_on_every_master(on_cluster, make_boss, max_hp=1_000_000, heartbeat_timeout_ms=600_000)
    for boss in bosses:
        boss_go_live(boss=boss)
    sessions = {boss.pk: make_session() for boss in bosses}
    procs = [processes.start_worker(), processes.start_beat()]
    try:

        def hit(boss: BossEncounter, seq: int, amount: int):
            s = sessions[boss.pk]
            return delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount)

        def hp(boss: BossEncounter) -> int:
            return boss_state(boss_id=boss.pk).hp

        for boss in bosses:
            hit(boss, 1, 100)
        wait_until(lambda: all(hp(b) == b.max_hp - 100 for b in bosses), what="the first tick of every boss")
        lost, *alive = bosses
        node = on_cluster.node_of(keys.BossKeys(lost.pk).state)
        version_before = boss_state(boss_id=lost.pk).version
        node.kill9()

        # the lost master's boss: authority_unavailable; the others keep being ticked
        with pytest.raises(AuthorityUnavailable):
            hit(lost, 2, 50)
        for boss in alive:
            assert not hit(boss, 2, 50).duplicate
        wait_until(lambda: all(hp(b) == b.max_hp - 150 for b in alive), what="ticks on the surviving masters")
        for boss in alive:
            assert not hit(boss, 3, 25).duplicate
        wait_until(lambda: all(hp(b) == b.max_hp - 175 for b in alive), what="more ticks on the survivors")

        # back on the same data dir (AOF): the same seq is accepted once, and applied exactly
        node.restart()
        on_cluster.wait_ok()
        assert boss_state(boss_id=lost.pk).version == version_before  # nothing lost, nothing moved
        wait_until(
            lambda: _ingest_ok(hit, lost, 2, 50), what="the restarted master to accept the re-sent seq"
        )
        assert hit(lost, 2, 50).duplicate  # exactly once
        assert not hit(lost, 3, 25).duplicate
        wait_until(lambda: hp(lost) == lost.max_hp - 175, what="the restarted master's boss to tick again")
    finally:
        for proc in reversed(procs):
            proc.stop()
    for boss in bosses:
        report = boss_verify(boss=BossEncounter.objects.get(pk=boss.pk))
        assert report.ok, (boss.slug, report.problems)
        assert report.hp == boss.max_hp - 175 and report.accepted == 175, report


def _ingest_ok(hit, boss, seq, amount) -> bool:
    try:
        hit(boss, seq, amount)
        return True
    except AuthorityUnavailable:
        return False
