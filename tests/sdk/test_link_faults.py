"""The SDK over a link that fails: a relay between it and a live uvicorn server
(tests/support/relay.py) holds the platform's answers or cuts the link, as a partition does.

* After a fence, the answers the platform queued during a partition must not stall the close
  of the fenced socket (websockets stops reading past 16 unread frames, so the platform's close
  frame would go unread for the whole close timeout): the new epoch follows at once.
* A cut link is noticed by the SDK's own liveness pings within about a second and left, so a
  3 s partition costs no epoch against the default 5 s heartbeat timeout: TCP alone would keep
  waiting on the dead connection while the crash scan fences the session.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async

from bosses.sagas.crash import crashed_sessions_scan, session_fence
from bosses.selectors import boss_ledger
from bosses.services import boss_go_live, boss_pause, boss_resume, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_create
from tests.sdk.test_client import Server, _held, until
from tests.support.relay import Relay
from worldboss_sdk.client import ShardClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90), pytest.mark.process]


@pytest.fixture
def server(transactional_db):
    srv = Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def relay(server):
    r = Relay(server.port)
    await r.start()
    yield r
    await r.close()


async def test_a_fence_after_a_partition_does_not_wait_on_the_queued_answers(relay, live_boss):
    _, token = await sync_to_async(shard_create)(key="lf-1", name="LF 1")
    client = ShardClient(
        f"ws://127.0.0.1:{relay.port}",
        shard="lf-1",
        token=token,
        tick_ms=20,
        heartbeat_ms=100,
        ping_interval_s=None,  # pings would notice the held link: this test is about the close
    )
    await client.start()
    await client.wait_connected()
    epoch = client.epoch
    client.hit(live_boss.slug, 30)
    assert await client.flush(5)
    await sync_to_async(boss_pause)(boss=live_boss)
    client.hit(live_boss.slug, 70)  # refused while paused: in flight, heartbeats report it
    await until(lambda: _held(live_boss, "lf-1", epoch) == 70)
    relay.hold()  # the platform's answers queue up on the way back
    saga = await sync_to_async(session_fence)(boss=live_boss, shard_key="lf-1", epoch=epoch)
    assert (saga.policy, saga.amount) == ("fair", 70)
    sent = client.stats.sent
    # every re-send and heartbeat from now on is answered `fenced`, and held: far more than
    # the 16 frames websockets queues before it stops reading
    await until(lambda: client.stats.sent >= sent + 40)
    await sync_to_async(boss_resume)(boss=live_boss)
    relay.release()
    await until(lambda: client.epoch != epoch)
    assert client.stats.fences == 1
    assert client.stats.unanswered_closes == 0  # the fenced socket's close handshake completed
    client.hit(live_boss.slug, 5)  # goes out under the new epoch
    assert await client.stop(timeout_s=10)
    ledger = await sync_to_async(boss_ledger)(boss_id=live_boss.pk)
    assert ledger.number("accepted") == 30 + 70 + 5  # 70 recovered by the fair saga, not re-sent
    await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=live_boss)
    assert report.ok, report.problems


async def test_a_3_s_partition_costs_no_epoch(relay, make_boss):
    # the defaults: heartbeats every second, a session silent for 5 s is declared crashed
    boss = await sync_to_async(make_boss)(heartbeat_interval_ms=1_000, heartbeat_timeout_ms=5_000)
    await sync_to_async(boss_go_live)(boss=boss)
    _, token = await sync_to_async(shard_create)(key="lf-2", name="LF 2")
    client = ShardClient(f"ws://127.0.0.1:{relay.port}", shard="lf-2", token=token)  # default options
    scanning = True

    async def crash_scan() -> None:  # the beat's crash scan, watching all along
        while scanning:
            await sync_to_async(crashed_sessions_scan)()
            await asyncio.sleep(0.2)

    scanner = asyncio.ensure_future(crash_scan())
    await client.start()
    await client.wait_connected()
    epoch = client.epoch
    dealt = 0

    async def play(seconds: float) -> None:
        nonlocal dealt
        for _ in range(int(seconds / 0.05)):
            client.hit(boss.slug, 7, player="ann")
            dealt += 7
            await asyncio.sleep(0.05)

    await play(0.5)
    relay.partition()
    await play(3.0)  # the partition's length: the game keeps hitting into its buffer
    relay.heal()
    await until(lambda: relay.connections >= 2 and client.connected.is_set(), timeout_s=20)
    await play(0.5)
    assert await client.flush(10)
    # signs of life again, recorded after the heal: a fence would have come by now if the
    # session had been silent for the timeout
    hb = keys.BossKeys(boss.pk).hb
    sess = keys.session_id("lf-2", epoch)
    stamp = int(await sync_to_async(get_redis().hget)(hb, sess))
    await until(lambda: int(get_redis().hget(hb, sess)) > stamp)
    scanning = False
    with contextlib.suppress(asyncio.CancelledError):
        await scanner
    assert await sync_to_async(get_redis().hgetall)(keys.BossKeys(boss.pk).settled) == {}
    assert (client.epoch, client.stats.fences) == (epoch, 0)  # the same session, resumed
    assert await client.stop(timeout_s=10)
    ledger = await sync_to_async(boss_ledger)(boss_id=boss.pk)
    assert ledger.number("accepted") == dealt
    await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=boss)
    assert report.ok, report.problems
