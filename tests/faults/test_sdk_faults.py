"""The real SDK (sdk/worldboss_sdk/client.py) under faults: its process killed or cut off, Redis paused.

Real processes: uvicorn serving /ws/shards/, a Celery worker and beat (crash scan every
200 ms), the SDK game server as its own process (tests/faults/sdk_proc.py); for the outage
test a redis-server of the test's own.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from asgiref.sync import sync_to_async

from bosses.models import SagaRun, SagaStatus
from bosses.services import boss_go_live, boss_pause, boss_resume, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis, reset_clients
from shards.services import shard_create
from tests.faults.conftest import start_server, wait_until
from tests.faults.test_redis_outage import OUTAGE_S, OwnRedis
from worldboss_sdk.buffer import BufferFull
from worldboss_sdk.client import ShardClient

pytestmark = [pytest.mark.process, pytest.mark.fault]

MAX_HP = 10_000_000


def quick_boss(make_boss, policy):
    boss = make_boss(
        max_hp=MAX_HP, crash_policy=policy, heartbeat_interval_ms=100, heartbeat_timeout_ms=1_000
    )
    boss_go_live(boss=boss)
    return boss


def saga_of(boss, shard_key, epoch):
    return SagaRun.objects.filter(
        boss=boss, kind="crash", shard_key=shard_key, epoch=epoch, status=SagaStatus.COMPLETED
    ).first()


def drained(boss):
    return get_redis().hlen(keys.BossKeys(boss.pk).buf) == 0


@pytest.mark.parametrize("policy", ["fair", "harsh"])
def test_sdk_process_killed_holding_damage(platform, sdk_procs, make_boss, policy):
    boss = quick_boss(make_boss, policy)
    shard, token = shard_create(key=f"sdk-{policy}", name="SDK game server")
    proc = sdk_procs(platform, shard.key, token, boss.slug, "hold")
    flushed = proc.wait_line("FLUSHED")
    assert flushed["acked"] == 300
    boss_pause(boss=boss)  # deltas are refused now; heartbeats still report what it holds
    proc.signal(signal.SIGUSR1)
    holding = proc.wait_line("HOLDING")
    assert holding["unacked"] == 450
    sess = f"{shard.key}:{holding['epoch']}"
    assert int(get_redis().hget(keys.BossKeys(boss.pk).held, sess)) == 450  # its last report
    proc.kill9()

    saga = wait_until(lambda: saga_of(boss, shard.key, holding["epoch"]), what="the crash saga")
    assert (saga.policy, saga.amount) == (policy, 450)
    boss_resume(boss=boss)
    wait_until(lambda: drained(boss), what="the tick")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    if policy == "fair":
        assert report.hp == MAX_HP - 750 and report.recovered == 450
    else:
        assert report.hp == MAX_HP - 300 and report.discarded == 450


@pytest.mark.parametrize("policy", ["fair", "harsh"])
def test_sdk_process_cut_off_and_back_never_double_applies(platform, sdk_procs, make_boss, policy):
    boss = quick_boss(make_boss, policy)
    shard, token = shard_create(key=f"sdk-cut-{policy}", name="SDK game server")
    proc = sdk_procs(platform, shard.key, token, boss.slug, "run")
    first = proc.wait_line("CONNECTED")
    time.sleep(0.6)  # the scenario: it fights for a while, then is cut off mid-flow
    proc.pause()
    saga = wait_until(lambda: saga_of(boss, shard.key, first["epoch"]), what="the crash saga")
    proc.resume()  # its next frames are refused as fenced; it settles and takes a new epoch
    time.sleep(1.0)
    proc.signal(signal.SIGUSR1)
    done = proc.wait_line("DONE")
    assert done["flushed"] and done["fences"] == 1 and done["epoch"] > first["epoch"]
    assert done["dropped"] == saga.amount  # the SDK dropped exactly what the saga settled
    assert done["generated"] == done["acked"] + done["dropped"]
    wait_until(lambda: drained(boss), what="the tick")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    lands = done["generated"] if policy == "fair" else done["generated"] - saga.amount
    assert report.hp == MAX_HP - lands and report.applied == lands


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_sdk_keeps_hitting_while_redis_is_paused_then_catches_up(settings, make_boss):
    own = OwnRedis()
    server = None
    try:
        settings.REDIS_URL = settings.BROKER_URL = settings.CHANNELS_URL = own.url
        reset_clients()
        server, url = await asyncio.to_thread(
            start_server, REDIS_URL=own.url, BROKER_URL=own.url, CHANNELS_URL=own.url
        )
        boss = await sync_to_async(quick_boss)(make_boss, "fair")
        _, token = await sync_to_async(shard_create)(key="sdk-outage", name="SDK")
        bound = 5_000
        client = ShardClient(
            url, shard="sdk-outage", token=token, tick_ms=50, heartbeat_ms=100, max_pending=bound
        )
        await client.start()
        await client.wait_connected()
        dealt = refused = 0
        worst_hit = worst_lag = 0.0

        async def play(seconds: float):
            nonlocal dealt, refused, worst_hit, worst_lag
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                started = time.monotonic()
                try:
                    client.hit(boss.slug, 10, player="p1")
                    dealt += 10
                except BufferFull:
                    refused += 1
                worst_hit = max(worst_hit, time.monotonic() - started)
                before = time.monotonic()
                await asyncio.sleep(0.002)
                worst_lag = max(worst_lag, time.monotonic() - before - 0.002)

        await play(1.0)
        own.pause()
        used_before = client._bosses[boss.slug].buffer.next_seq - 1
        try:
            worst_hit = worst_lag = 0.0
            await play(OUTAGE_S)
        finally:
            own.resume()
        # The game loop never waited on the platform: a hit that did would take at least the
        # client's socket timeout (seconds). The bounds leave room for a loaded machine.
        assert worst_hit < 0.2 and worst_lag < 0.5
        assert refused > 0 and client._bosses[boss.slug].buffer.pending <= bound
        assert await client.flush(30)
        last_seq = int(get_redis().hget(keys.BossKeys(boss.pk).seq, f"sdk-outage:{client.epoch}"))
        assert last_seq - used_before <= 2  # the in-flight delta again, then ONE catch-up delta
        await client.stop()
        await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
        report = await sync_to_async(boss_verify)(boss=boss)
        assert report.ok, report.problems
        assert report.hp == MAX_HP - dealt and report.accepted == dealt
    finally:
        if server is not None:
            server.stop()
        own.kill()
        reset_clients()
