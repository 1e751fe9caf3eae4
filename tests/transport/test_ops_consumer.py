"""``/ws/ops/bosses/<slug>/`` through Channels' communicator against real Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from bosses.ops_selectors import LATE_AFTER_INTERVALS
from bosses.services import boss_go_live, boss_tick
from core import keys
from core.clock import ManualClock
from core.redis import get_redis
from liveops.asgi import application
from shards.services import adelta_ingest, aheartbeat_record
from transport.consumers import ops as ops_consumer
from transport.hub import get_hub

pytestmark = [pytest.mark.django_db(transaction=True)]


def _cookie(*, staff: bool, name: str, perms: tuple[str, ...] = ("view_bossencounter",)) -> bytes:
    user = get_user_model().objects.create_user(name, password="pw", is_staff=staff)
    if staff:  # staff is not a role: watching needs bosses.view_bossencounter
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="bosses", codename__in=perms)
        )
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def connect(slug: str, cookie: bytes | None, app=application):
    headers = [(b"origin", b"http://testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    comm = WebsocketCommunicator(app, f"/ws/ops/bosses/{slug}/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def until(comm, predicate, timeout=5.0):
    """Receive frames until one matches; returns it (and fails on timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = json.loads(await comm.receive_from(timeout=max(0.05, deadline - loop.time())))
        if predicate(msg):
            return msg


@pytest.fixture
async def hub_cleanup():
    yield
    await get_hub().close()


async def test_refuses_anonymous_non_staff_and_unknown_boss(make_boss, hub_cleanup):
    boss = await database_sync_to_async(make_boss)()
    player = await database_sync_to_async(_cookie)(staff=False, name="player")
    staff = await database_sync_to_async(_cookie)(staff=True, name="ops")
    for slug, cookie, code, close in (
        (boss.slug, None, "unauthorized", 4401),
        (boss.slug, player, "forbidden", 4403),
        ("no-such-boss", staff, "unknown_boss", 4404),
    ):
        comm = await connect(slug, cookie)
        err = json.loads(await comm.receive_from())
        assert err["type"] == "error" and err["code"] == code
        assert (await comm.receive_output())["code"] == close
        await comm.disconnect()


async def test_staff_gets_snapshot_live_states_and_refreshed_shard_rows(
    make_boss, make_session, hub_cleanup, monkeypatch
):
    # the periodic refresh is what is checked here, not its period: refresh every 100 ms
    monkeypatch.setattr(ops_consumer, "OPS_REFRESH_INTERVAL_MS", 100)
    boss = await database_sync_to_async(make_boss)(max_hp=10_000)
    await database_sync_to_async(boss_go_live)(boss=boss)
    sess = await database_sync_to_async(make_session)("eu-1")
    cookie = await database_sync_to_async(_cookie)(staff=True, name="ops")
    comm = await connect(boss.slug, cookie)
    hello = json.loads(await comm.receive_from())
    assert hello["type"] == "hello" and hello["channel"] == "ops"
    first = await until(comm, lambda m: m["type"] == "ops")
    assert first["state"]["hp"] == 10_000 and first["series"] and first["shards"][0]["health"] == "idle"

    # damage lands in the shard buffer: the next refresh shows it buffered, not applied
    await adelta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=sess.epoch, seq=1, amount=1_234)
    buffered = await until(comm, lambda m: m["type"] == "ops" and m["buffered"] == 1_234)
    assert buffered["shards"][0]["buffered"] == 1_234 and buffered["shards"][0]["health"] == "ok"
    assert "series" not in buffered

    # the tick publishes; the state arrives pushed, before or without any refresh
    out = await database_sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    state = await until(comm, lambda m: m["type"] == "state")
    assert (state["hp"], state["version"]) == (10_000 - 1_234, out.version)
    refreshed = await until(comm, lambda m: m["type"] == "ops" and m["state"]["version"] == out.version)
    assert refreshed["shards"][0]["contribution"] == 1_234 and refreshed["buffered"] == 0
    assert refreshed["events"][0]["kind"] == "tick" and refreshed["events"][0]["applied"] == 1_234
    await comm.disconnect()


async def test_bad_frames_get_error_frames_and_change_nothing(live_boss, hub_cleanup):
    cookie = await database_sync_to_async(_cookie)(staff=True, name="ops")
    comm = await connect(live_boss.slug, cookie)
    await until(comm, lambda m: m["type"] == "ops")
    for frame, code in (
        ("not json", "malformed"),
        ('{"type": 5}', "malformed"),
        ("[1,2]", "malformed"),
        ('{"type": "pause"}', "unknown_type"),
    ):
        await comm.send_to(text_data=frame)
        err = await until(comm, lambda m: m["type"] == "error")
        assert err["code"] == code, frame
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await until(comm, lambda m: m["type"] == "error"))["code"] == "malformed"
    await comm.send_to(text_data=json.dumps({"type": "refresh"}))
    ops = await until(comm, lambda m: m["type"] == "ops")
    assert ops["state"]["status"] == "live" and ops["state"]["version"] == 1
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    assert (await until(comm, lambda m: m["type"] == "pong"))["version"] == 1
    await comm.disconnect()


async def test_authority_down_at_connect_is_an_error_frame_then_it_recovers(live_boss, hub_cleanup, settings):
    """Redis is away when the operator connects: an authority_unavailable frame, no crash;
    once it is back the feed starts (with the HP series) without reconnecting."""
    from core.redis import reset_clients

    cookie = await database_sync_to_async(_cookie)(staff=True, name="ops")
    get_hub()  # the fan-out hub keeps its (working) connection; only the reads fail
    live_url = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/10"  # the selectors' client points nowhere
    reset_clients()
    try:
        comm = await connect(live_boss.slug, cookie)
        assert json.loads(await comm.receive_from())["type"] == "hello"
        err = await until(comm, lambda m: m["type"] == "error", timeout=10)
        assert err["code"] == "authority_unavailable"
    finally:
        settings.REDIS_URL = live_url
        reset_clients()
    ops = await until(comm, lambda m: m["type"] == "ops", timeout=5)
    assert ops["state"]["status"] == "live" and ops["series"]
    await comm.disconnect()


async def test_a_silent_shard_turns_late_in_the_feed_when_the_clock_moves(
    make_boss, make_session, hub_cleanup
):
    """The feed measures heartbeat ages against the consumer's clock (Redis TIME in production)."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from django.urls import path

    boss = await database_sync_to_async(make_boss)(heartbeat_interval_ms=100, heartbeat_timeout_ms=60_000)
    await database_sync_to_async(boss_go_live)(boss=boss)
    sess = await database_sync_to_async(make_session)("eu-1")
    await aheartbeat_record(boss_id=boss.pk, shard_key="eu-1", epoch=sess.epoch, pending=3)
    stamp = int(
        await database_sync_to_async(get_redis().hget)(
            keys.BossKeys(boss.pk).hb, keys.session_id("eu-1", sess.epoch)
        )
    )
    clock = ManualClock(stamp + 50)
    app = AuthMiddlewareStack(
        URLRouter([path("ws/ops/bosses/<slug:slug>/", ops_consumer.OpsBossConsumer.as_asgi(clock=clock))])
    )
    cookie = await database_sync_to_async(_cookie)(staff=True, name="ops")
    comm = await connect(boss.slug, cookie, app)
    first = await until(comm, lambda m: m["type"] == "ops")
    assert first["server_ms"] == stamp + 50
    assert (first["shards"][0]["health"], first["shards"][0]["heartbeat_age_ms"]) == ("ok", 50)

    clock.advance(100 * LATE_AFTER_INTERVALS)  # silent for more than two heartbeat intervals
    await comm.send_to(text_data=json.dumps({"type": "refresh"}))
    late = await until(comm, lambda m: m["type"] == "ops" and m["server_ms"] == clock.now_ms())
    assert late["shards"][0]["health"] == "late" and late["health"]["late"] == 1
    assert late["shards"][0]["heartbeat_age_ms"] == 50 + 100 * LATE_AFTER_INTERVALS
    await comm.disconnect()
