"""The game-server SDK against a live uvicorn server (subprocess) and real Redis.

Exactly-once under dropped sockets, a frozen server (re-sends of the same seq, acked as
duplicates) and a server restart; predicted HP; the fence settlement rule; a bounded buffer
that raises instead of dropping.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time

import pytest
from asgiref.sync import sync_to_async

from bosses.sagas.crash import session_fence
from bosses.selectors import boss_ledger
from bosses.services import boss_pause, boss_resume, boss_tick
from bosses.verification import boss_verify
from shards.services import shard_create
from tests.support import processes
from worldboss_sdk.buffer import BufferFull
from worldboss_sdk.client import ShardClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90), pytest.mark.process]


class Server:
    """uvicorn on a fixed port, restartable (the SDK must reconnect to the same address)."""

    def __init__(self) -> None:
        self.port = processes.free_port()
        self.proc: processes.Proc | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc, _ = processes.start_server(port=self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def server(transactional_db):
    srv = Server()
    srv.start()
    yield srv
    srv.stop()


async def until(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await sync_to_async(predicate)():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_exactly_once_across_drops_freezes_and_a_restart(server, live_boss):
    _, token = await sync_to_async(shard_create)(key="eu-1", name="EU 1")
    client = ShardClient(server.url, shard="eu-1", token=token, tick_ms=50, heartbeat_ms=200)
    await client.start()
    await client.wait_connected()
    first_epoch = client.epoch
    rng = random.Random(7)
    total = 0

    async def play(seconds: float) -> None:
        nonlocal total
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(20):
                amount = rng.randint(1, 100)  # stays below max_hp: no death here
                client.hit(live_boss.slug, amount, player=f"p{rng.randint(1, 30)}")
                total += amount
            await asyncio.sleep(0.01)

    await play(0.5)
    # 1. network drops: the SDK resumes its epoch and re-sends its in-flight seq
    for _ in range(3):
        client.drop_connection()
        await play(0.3)
    # 2. a frozen server: the same seq is re-sent every tick; later copies are duplicates
    server.proc.signal(signal.SIGSTOP)
    await play(0.5)
    server.proc.signal(signal.SIGCONT)
    await play(0.3)
    # 3. the server dies and comes back on the same address
    server.proc.kill9()
    await play(0.3)
    await sync_to_async(server.start)()
    await play(0.5)
    assert await client.stop(timeout_s=15), f"still held: {client.unacked(live_boss.slug)}"
    assert client.epoch == first_epoch  # every reconnect resumed the same session
    assert client.stats.connects >= 5 and client.stats.resent > 0 and client.stats.duplicates > 0
    ledger = await sync_to_async(boss_ledger)(boss_id=live_boss.pk)
    assert ledger.number("accepted") == total
    await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == total and report.hp == live_boss.max_hp - total


async def test_predicted_hp_is_truth_minus_unacknowledged_damage(server, live_boss):
    _, token = await sync_to_async(shard_create)(key="eu-2", name="EU 2")
    async with ShardClient(server.url, shard="eu-2", token=token, tick_ms=50) as client:
        client.watch(live_boss.slug)
        await client.wait_connected()
        for _ in range(100):
            if client.state(live_boss.slug):
                break
            await asyncio.sleep(0.05)
        assert client.predicted_hp(live_boss.slug) == live_boss.max_hp
        client.hit(live_boss.slug, 400)
        client.hit(live_boss.slug, 100, player="zoe")
        # at once, before any network round trip: truth minus what this shard holds
        assert client.unacked(live_boss.slug) == 500
        assert client.predicted_hp(live_boss.slug) == live_boss.max_hp - 500
        assert await client.flush(5)
        assert client.predicted_hp(live_boss.slug) == live_boss.max_hp  # acked, not ticked yet
        out = await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
        for _ in range(100):
            if client.state(live_boss.slug)["version"] == out.version:
                break
            await asyncio.sleep(0.02)
        assert client.state(live_boss.slug)["hp"] == live_boss.max_hp - 500
        assert client.predicted_hp(live_boss.slug) == live_boss.max_hp - 500


async def test_fenced_session_settles_then_continues_under_a_new_epoch(server, live_boss):
    _, token = await sync_to_async(shard_create)(key="eu-3", name="EU 3")
    client = ShardClient(server.url, shard="eu-3", token=token, tick_ms=50, heartbeat_ms=100)
    await client.start()
    await client.wait_connected()
    epoch = client.epoch
    client.hit(live_boss.slug, 30)
    assert await client.flush(5)
    await sync_to_async(boss_pause)(boss=live_boss)
    client.hit(live_boss.slug, 70)  # refused while paused: stays in flight, heartbeats report it
    await until(lambda: _held(live_boss, "eu-3", epoch) == 70)
    saga = await sync_to_async(session_fence)(boss=live_boss, shard_key="eu-3", epoch=epoch)
    assert saga.amount == 70 and saga.policy == "fair"
    await sync_to_async(boss_resume)(boss=live_boss)
    await until(lambda: client.stats.fences == 1 and client.epoch != epoch)
    client.hit(live_boss.slug, 5)  # goes out under the new epoch, seq 1
    assert await client.stop(timeout_s=10)
    ledger = await sync_to_async(boss_ledger)(boss_id=live_boss.pk)
    # 30 accepted, 70 recovered by the fair saga (not re-sent), 5 accepted under the new epoch
    assert ledger.number("accepted") == 30 + 70 + 5
    await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == 105


def _held(boss, shard, epoch) -> int:
    from core import keys
    from core.redis import get_redis

    return int(get_redis().hget(keys.BossKeys(boss.pk).held, f"{shard}:{epoch}") or 0)


async def test_buffer_is_bounded_and_the_game_never_waits_while_the_platform_is_down(live_boss):
    # nothing listens on this port: the platform is down
    client = ShardClient(
        f"ws://127.0.0.1:{processes.free_port()}",
        shard="eu-4",
        token="x",
        max_pending=1_000,
        open_timeout_s=0.2,
    )
    await client.start()
    started = time.monotonic()
    for _ in range(10):
        client.hit(live_boss.slug, 100)
    with pytest.raises(BufferFull):
        client.hit(live_boss.slug, 1)
    assert time.monotonic() - started < 0.05  # hit() is plain memory work
    assert client.unacked(live_boss.slug) == 1_000
    with pytest.raises(ValueError):
        client.hit(live_boss.slug, 2.5)
    assert await client.stop(timeout_s=0.3) is False  # nothing could be delivered: reported, not hidden


async def test_live_server_refuses_a_1_mib_frame_with_1009(server, live_boss):
    import websockets
    from websockets.asyncio.client import connect

    async with connect(f"{server.url}/ws/bosses/{live_boss.slug}/", max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "ping", "pad": "x" * (1 << 20)}))
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd.code == 1009
    async with connect(f"{server.url}/ws/bosses/{live_boss.slug}/") as ws:  # the server is fine
        assert json.loads(await ws.recv())["type"] == "hello"
        assert json.loads(await ws.recv())["type"] == "state"


async def test_fence_on_one_boss_keeps_every_boss_exact(server, live_boss, make_boss):
    from bosses.services import boss_go_live

    other = await sync_to_async(make_boss)()
    await sync_to_async(boss_go_live)(boss=other)
    _, token = await sync_to_async(shard_create)(key="eu-5", name="EU 5")
    client = ShardClient(server.url, shard="eu-5", token=token, tick_ms=30, heartbeat_ms=100)
    await client.start()
    await client.wait_connected()
    epoch = client.epoch
    dealt = {live_boss.slug: 0, other.slug: 0}

    async def play(seconds: float, bosses) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for slug in bosses:
                client.hit(slug, 3)
                dealt[slug] += 3
            await asyncio.sleep(0.005)

    await play(0.3, dealt)
    await sync_to_async(boss_pause)(boss=live_boss)
    await play(0.3, dealt)  # live_boss: refused while paused, held; other: flowing
    await until(lambda: _held(live_boss, "eu-5", epoch) > 0)
    saga = await sync_to_async(session_fence)(boss=live_boss, shard_key="eu-5", epoch=epoch)
    await sync_to_async(boss_resume)(boss=live_boss)
    await play(0.5, dealt)
    assert await client.stop(timeout_s=10)
    assert client.stats.fences == 1 and client.epoch > epoch
    for boss in (live_boss, other):
        ledger = await sync_to_async(boss_ledger)(boss_id=boss.pk)
        # fair policy: the saga's recovered amount counts as accepted, and was not re-sent
        assert ledger.number("accepted") == dealt[boss.slug], boss.slug
        await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
        report = await sync_to_async(boss_verify)(boss=boss)
        assert report.ok, report.problems
    assert saga.amount > 0


async def test_clean_stop_says_goodbye_instead_of_crashing(server, live_boss):
    from bosses.models import SagaRun
    from core import keys
    from core.redis import get_redis
    from shards.models import Shard

    _, token = await sync_to_async(shard_create)(key="eu-6", name="EU 6")
    client = ShardClient(server.url, shard="eu-6", token=token, tick_ms=30, heartbeat_ms=100)
    await client.start()
    await client.wait_connected()
    client.hit(live_boss.slug, 250)
    assert await client.stop()
    assert client.left == {"type": "bye_ack", "epoch": client.epoch, "settled": {live_boss.slug: 0}}
    saga = await sync_to_async(SagaRun.objects.get)(shard_key="eu-6", epoch=client.epoch)
    assert saga.detail["reason"] == "left" and saga.amount == 0
    assert (await sync_to_async(Shard.objects.get)(key="eu-6")).status == "online"  # not crashed
    sess = f"eu-6:{client.epoch}"
    assert await sync_to_async(get_redis().hexists)(keys.BossKeys(live_boss.pk).settled, sess)
    assert (await sync_to_async(boss_ledger)(boss_id=live_boss.pk)).number("accepted") == 250


async def test_a_goodbye_after_the_end_reports_nothing_held(server, live_boss):
    """The SDK learns from its state socket that the fight is over while its last heartbeats
    still report an in-flight delta: before ``bye`` it tells that boss too that it holds
    nothing, so the session ends settled at 0 (nothing discarded, nothing credited)."""
    from bosses.models import SagaRun
    from bosses.services import boss_end

    _, token = await sync_to_async(shard_create)(key="eu-7", name="EU 7")
    # resend_ms: the refused delta is not re-sent (a refusal after the end drops the buffer)
    client = ShardClient(
        server.url, shard="eu-7", token=token, tick_ms=30, heartbeat_ms=100, resend_ms=600_000
    )
    client.watch(live_boss.slug)
    await client.start()
    await client.wait_connected()
    epoch = client.epoch
    await sync_to_async(boss_pause)(boss=live_boss)
    client.hit(live_boss.slug, 500)  # refused while paused: in flight, heartbeats report it
    await until(lambda: _held(live_boss, "eu-7", epoch) == 500)
    await sync_to_async(boss_end)(boss=live_boss)
    await until(lambda: (client.state(live_boss.slug) or {}).get("status") == "expired")
    assert await client.stop()
    assert client.left is not None and client.left["settled"] == {live_boss.slug: 0}
    saga = await sync_to_async(SagaRun.objects.get)(shard_key="eu-7", epoch=epoch)
    assert (saga.detail["reason"], saga.amount) == ("left", 0)
    report = await sync_to_async(boss_verify)(boss=live_boss)
    assert report.ok, report.problems
    assert (report.accepted, report.discarded, report.recovered) == (0, 0, 0)
