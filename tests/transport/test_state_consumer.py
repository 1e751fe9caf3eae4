"""/ws/bosses/<slug>/ through Channels' communicator against real Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from bosses.services import boss_pause, boss_tick
from core import keys
from core.redis import get_redis
from core.wire import encode
from liveops.asgi import application
from tests.support.authority import delta_ingest
from tests.support.waiting import wait_until_async
from transport.hub import get_hub
from worldboss_sdk.protocol import PROTOCOL_VERSION, CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def connect(slug: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, f"/ws/bosses/{slug}/")
    connected, _ = await comm.connect()
    assert connected
    return comm


async def recv(comm, timeout=3.0) -> dict:
    return json.loads(await comm.receive_from(timeout=timeout))


async def open_viewer(slug: str) -> tuple[WebsocketCommunicator, dict]:
    comm = await connect(slug)
    hello = await recv(comm)
    assert hello == {
        "type": "hello",
        "v": PROTOCOL_VERSION,
        "channel": "boss",
        "boss": slug,
        "name": hello["name"],
    }
    snap = await recv(comm)
    assert snap["type"] == "state"
    return comm, snap


def hit_and_tick(boss, session, seq: int, amount: int):
    delta_ingest(boss_id=boss.pk, shard_key=session.shard_key, epoch=session.epoch, seq=seq, amount=amount)
    return boss_tick(boss_id=boss.pk, force=True)


async def test_snapshot_on_connect_matches_the_authority(live_boss, make_session):
    s = await sync_to_async(make_session)()
    out = await sync_to_async(hit_and_tick)(live_boss, s, 1, 1234)
    comm, snap = await open_viewer(live_boss.slug)
    assert snap["hp"] == live_boss.max_hp - 1234 == out.hp
    assert snap["version"] == out.version
    assert snap["max_hp"] == live_boss.max_hp and snap["status"] == "live" and snap["boss"] == live_boss.slug
    assert set(snap) >= {"type", "boss", "hp", "max_hp", "version", "status", "phase", "ts"}
    await comm.disconnect()


async def test_each_tick_arrives_once_with_strictly_increasing_versions(live_boss, make_session):
    s = await sync_to_async(make_session)()
    comm, snap = await open_viewer(live_boss.slug)
    versions = [snap["version"]]
    for seq in range(1, 6):
        out = await sync_to_async(hit_and_tick)(live_boss, s, seq, 100_000)
        msg = await recv(comm)
        while msg["type"] != "state":  # phase events in between
            assert msg["type"] == "phase" and msg["version"] == versions[-1]
            msg = await recv(comm)
        assert msg["version"] == out.version and msg["hp"] == out.hp
        versions.append(msg["version"])
        if out.phase != out.old_phase:
            phase = await recv(comm)
            assert phase["type"] == "phase" and phase["phase"] == out.phase_name
    assert versions == sorted(set(versions)) and len(versions) == 6
    # A late publisher (an older version published after a newer one) never reaches a socket.
    stale = {
        "type": "state",
        "boss": live_boss.slug,
        "hp": 1,
        "max_hp": live_boss.max_hp,
        "version": versions[1],
        "status": "live",
        "phase": "",
        "ts": 0,
    }
    await sync_to_async(get_redis().publish)(keys.state_channel(live_boss.pk), encode(stale))
    await sync_to_async(boss_pause)(boss=live_boss)
    msg = await recv(comm)
    assert msg["type"] == "state" and msg["status"] == "paused" and msg["version"] == versions[-1] + 1
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


async def test_unknown_boss_gets_an_error_frame_and_close_code():
    comm = await connect("no-such-boss")
    err = await recv(comm)
    assert err["type"] == "error" and err["code"] == "unknown_boss" and "no-such-boss" in err["detail"]
    closed = await comm.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": CloseCode.UNKNOWN_BOSS}


async def test_bad_frames_get_error_frames_and_do_not_disturb_other_viewers(live_boss, make_session):
    s = await sync_to_async(make_session)()
    bad, _ = await open_viewer(live_boss.slug)
    good, _ = await open_viewer(live_boss.slug)
    cases = [
        ("text", "not json{"),
        ("bytes", b"\x00\x01"),
        ("text", "[1,2]"),
        ("text", '{"type": 5}'),
        ("text", '{"type": "attack", "boss": "x"}'),
        ("text", json.dumps({"type": "ping", "pad": "x" * (1 << 20)})),
    ]
    codes = []
    for kind, payload in cases[:-1]:
        await (bad.send_to(text_data=payload) if kind == "text" else bad.send_to(bytes_data=payload))
        codes.append((await recv(bad))["code"])
    assert codes == ["malformed", "malformed", "malformed", "malformed", "unknown_type"]
    await bad.send_to(text_data='{"type": "ping", "id": 7}')
    pong = await recv(bad)
    assert pong["type"] == "pong" and pong["id"] == 7
    # 1 MiB frame: error frame, then close 1009 (uvicorn refuses it even earlier: --ws-max-size)
    await bad.send_to(text_data=cases[-1][1])
    assert (await recv(bad))["code"] == "too_large"
    assert (await bad.receive_output(timeout=2))["code"] == 1009
    out = await sync_to_async(hit_and_tick)(live_boss, s, 1, 10)
    msg = await recv(good)
    assert msg["version"] == out.version and msg["hp"] == out.hp
    await good.disconnect()


async def test_flooding_viewer_is_closed_with_rate_limited(live_boss):
    comm, _ = await open_viewer(live_boss.slug)
    for _ in range(25):
        await comm.send_to(text_data='{"type": "ping"}')
    outputs = []
    while True:
        out = await comm.receive_output(timeout=2)
        outputs.append(out)
        if out["type"] == "websocket.close":
            break
    assert outputs[-1]["code"] == CloseCode.RATE_LIMITED
    assert json.loads(outputs[-2]["text"])["code"] == "rate_limited"


async def test_too_many_malformed_frames_close_the_socket(live_boss):
    comm, _ = await open_viewer(live_boss.slug)
    for _ in range(10):
        await comm.send_to(text_data="nope")
    outputs = [await comm.receive_output(timeout=2) for _ in range(11)]
    assert outputs[-1] == {"type": "websocket.close", "code": CloseCode.MALFORMED}


async def test_viewers_share_one_subscription_and_leave_cleanly(live_boss):
    viewers = [(await open_viewer(live_boss.slug))[0] for _ in range(5)]
    hub = get_hub()
    assert hub.subscriber_count(live_boss.pk) == 5
    channels = await sync_to_async(get_redis().pubsub_numsub)(keys.state_channel(live_boss.pk))
    assert channels[0][1] == 1  # one Redis subscription for five sockets
    for comm in viewers:
        await comm.disconnect()
    await wait_until_async(lambda: hub.subscriber_count(live_boss.pk) == 0, what="the viewers left the hub")
    channels = await sync_to_async(get_redis().pubsub_numsub)(keys.state_channel(live_boss.pk))
    assert channels[0][1] == 0


async def test_http_snapshot_matches_the_websocket_snapshot(live_boss, make_session, client):
    from shards.services import shard_create

    await sync_to_async(shard_create)(key="eu-9", name="EU 9", region="eu", kind="hosted")
    s = await sync_to_async(make_session)()
    await sync_to_async(hit_and_tick)(live_boss, s, 1, 777)
    comm, snap = await open_viewer(live_boss.slug)
    body = (await sync_to_async(client.get)(f"/api/bosses/{live_boss.slug}/state")).json()
    assert {k: body[k] for k in snap} == snap
    assert {"key": "eu-9", "name": "EU 9", "region": "eu", "status": "online"} in body["shards"]
    missing = await sync_to_async(client.get)("/api/bosses/nope/state")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_boss"
    await comm.disconnect()


async def test_a_connect_burst_looks_the_boss_up_once(live_boss, monkeypatch):
    from transport.consumers import state as consumers

    calls = []
    real = consumers._boss_ref_sync

    def counting(slug):
        calls.append(slug)
        return real(slug)

    monkeypatch.setattr(consumers, "_boss_ref_sync", counting)
    consumers._boss_cache.clear()
    refs = await asyncio.gather(*(consumers.boss_ref_get(slug=live_boss.slug) for _ in range(50)))
    assert calls == [live_boss.slug] and {r.id for r in refs} == {live_boss.pk}
    consumers._boss_cache.clear()
    with pytest.raises(consumers.UnknownBoss):  # a failed lookup fails every waiter, and is not cached
        await asyncio.gather(*(consumers.boss_ref_get(slug="nope") for _ in range(5)))
    assert "nope" not in consumers._boss_cache and not consumers._boss_lookups
