"""The fan-out hub: version filter, latest-wins, Redis reconnect + resync, and real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from bosses.services import boss_tick
from core import keys
from core.redis import get_redis
from core.wire import encode
from shards.services import adelta_ingest
from tests.support.waiting import wait_until_async
from transport.fastpath import text_frame
from transport.hub import FanoutHub, Subscriber


def state(version: int, hp: int = 100) -> str:
    return encode(
        {
            "type": "state",
            "boss": "b",
            "hp": hp,
            "max_hp": 100,
            "version": version,
            "status": "live",
            "phase": "",
            "ts": 0,
        }
    )


def event(version: int) -> str:
    return encode({"type": "phase", "boss": "b", "phase": "Enraged", "version": version, "ts": 0})


class Recorder:
    """A send() that can be blocked, like a socket whose transport is paused."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, text: str) -> None:
        await self.open.wait()
        self.texts.append(text)

    def versions(self) -> list[tuple[str, int]]:
        return [(json.loads(t)["type"], json.loads(t)["version"]) for t in self.texts]


async def test_subscriber_never_sends_an_older_or_equal_state():
    rec = Recorder()
    sub = Subscriber(rec)
    for v in (3, 2, 3, 5, 4, 6):
        sub.offer(state(v), version=v, is_state=True)
    sub.offer(event(6), version=6, is_state=False)  # events are not filtered by version
    assert rec.versions() == [("state", 3), ("state", 5), ("state", 6), ("phase", 6)]
    assert sub.version == 6


async def test_slow_socket_gets_the_latest_state_not_a_queue():
    rec = Recorder()
    sub = Subscriber(rec)
    sub.offer(state(1), version=1, is_state=True)
    rec.open.clear()  # the transport is paused: the next send blocks
    for v in range(2, 50):
        sub.offer(state(v), version=v, is_state=True)
        if v == 30:
            sub.offer(event(30), version=30, is_state=False)
    assert len(sub._pending) <= 2  # one state slot + the event, never 48 queued states
    rec.open.set()
    await wait_until_async(lambda: len(rec.versions()) >= 4, what="the held frames sent")
    # state 2 was already being sent when the transport paused; then the event, then the newest
    assert rec.versions() == [("state", 1), ("state", 2), ("phase", 30), ("state", 49)]
    assert sub.skipped == 46


async def test_text_frame_is_a_valid_unmasked_text_frame():
    for n in (0, 125, 126, 65535, 65536):
        text = "x" * n
        frame = text_frame(text)
        assert frame[0] == 0x81 and not frame[1] & 0x80
        assert frame.endswith(text.encode())
        header = {True: 2, False: 4}[n < 126] if n < 65536 else 10
        assert len(frame) == header + n


@pytest.mark.django_db(transaction=True)
async def test_hub_resubscribes_and_resyncs_after_redis_drops_it(live_boss, make_session):
    hub = FanoutHub()
    rec = Recorder()
    sub = Subscriber(rec)
    await hub.subscribe(live_boss.pk, sub)
    s = await sync_to_async(make_session)()
    r = get_redis()

    async def hit_and_tick(seq):
        await adelta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=10)
        return await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)

    first = await hit_and_tick(1)
    for _ in range(100):
        if rec.texts:
            break
        await asyncio.sleep(0.01)
    assert rec.versions()[-1] == ("state", first.version)
    # Redis drops every subscriber connection; a tick lands while the hub is away
    killed = await sync_to_async(r.client_kill_filter)(_type="pubsub")
    assert killed >= 1
    second = await hit_and_tick(2)
    for _ in range(300):
        if rec.texts and json.loads(rec.texts[-1])["version"] == second.version:
            break
        await asyncio.sleep(0.01)
    assert hub.reconnects >= 1
    assert json.loads(rec.texts[-1])["version"] == second.version  # via the message or the resync
    assert [v for _, v in rec.versions()] == sorted({v for _, v in rec.versions()})
    # and live messages flow again on the new connection
    third = await hit_and_tick(3)
    for _ in range(200):
        if json.loads(rec.texts[-1])["version"] == third.version:
            break
        await asyncio.sleep(0.01)
    assert json.loads(rec.texts[-1])["version"] == third.version
    channels = await sync_to_async(r.pubsub_numsub)(keys.state_channel(live_boss.pk))
    assert channels[0][1] == 1
    await hub.unsubscribe(live_boss.pk, sub)
    await hub.close()


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(90)
def test_real_sockets_every_viewer_ends_on_the_final_version():
    """A small run of the fan-out benchmark as a functional check (no timing asserted)."""
    from tools.bench.fanout import run_fanout

    result = run_fanout(layer="hub", viewers=60, hz=20, seconds=1.5, workers=2, drain_s=10)
    assert result.connected == 60 and not result.errors
    assert result.ended_on_final == 60
    assert result.delivered == result.expected == 60 * 30  # nobody slow here: nothing skipped


@pytest.mark.django_db(transaction=True)
async def test_a_reset_boss_starts_a_new_fight_at_version_1(live_boss, make_session):
    from bosses.services import boss_end, boss_go_live, boss_reset

    hub = FanoutHub()
    rec = Recorder()
    sub = Subscriber(rec)
    await hub.subscribe(live_boss.pk, sub)
    s = await sync_to_async(make_session)()
    for seq in (1, 2):
        await adelta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=5)
        await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
    await sync_to_async(boss_end)(boss=live_boss)
    await sync_to_async(boss_reset)(boss=live_boss)
    await sync_to_async(boss_go_live)(boss=live_boss)
    for _ in range(200):
        if rec.texts and json.loads(rec.texts[-1])["version"] == 1:
            break
        await asyncio.sleep(0.01)
    states = [json.loads(t) for t in rec.texts if json.loads(t)["type"] == "state"]
    assert [m["version"] for m in states] == [2, 3, 4, 1]  # ticks, expired, then the new fight
    assert states[-1]["status"] == "live" and states[-1]["hp"] == live_boss.max_hp
    # and the new fight's versions flow on from there
    s2 = await sync_to_async(make_session)(s.shard_key)
    await adelta_ingest(boss_id=live_boss.pk, shard_key=s2.shard_key, epoch=s2.epoch, seq=1, amount=5)
    out = await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
    for _ in range(200):
        if json.loads(rec.texts[-1])["version"] == out.version == 2:
            break
        await asyncio.sleep(0.01)
    assert json.loads(rec.texts[-1])["version"] == 2
    await hub.close()


@pytest.mark.django_db(transaction=True)
async def test_snapshot_reads_are_shared_but_never_issued_before_a_caller_joined(live_boss, monkeypatch):
    from core import authority
    from transport import hub as hub_module

    reads = []
    real = authority.aread_state

    async def counting(client, boss_id):
        reads.append(boss_id)
        return await real(client, boss_id)

    monkeypatch.setattr(hub_module, "aread_state", counting)
    hub = FanoutHub()
    states = await asyncio.gather(*(hub.snapshot(live_boss.pk) for _ in range(30)))
    assert len(reads) == 1 and {s.version for s in states} == {1}
    first = asyncio.ensure_future(hub.snapshot(live_boss.pk))
    await asyncio.sleep(0)  # the read task starts: it is (about to be) on the wire
    await asyncio.sleep(0)
    late = await hub.snapshot(live_boss.pk)  # joined after the read was issued: a read of its own
    await first
    assert len(reads) == 3 and late.version == 1
