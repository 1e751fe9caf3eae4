"""The shared operator feeds: one poll loop per boss (and one for the overview) per process,
whatever the number of operator sockets (communicator, real Redis)."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from bosses.services import boss_go_live, boss_tick
from liveops.asgi import application
from shards.services import adelta_ingest, aheartbeat_record
from tests.transport.test_ops_consumer import _cookie, connect, until
from transport.consumers import ops as ops_consumer
from transport.hub import get_hub
from transport.ops_feed import feeds_running

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def hub_cleanup():
    yield
    await get_hub().close()


async def test_many_operator_sockets_of_a_boss_share_one_feed(
    make_boss, make_session, hub_cleanup, monkeypatch
):
    monkeypatch.setattr(ops_consumer, "OPS_REFRESH_INTERVAL_MS", 50)
    boss = await database_sync_to_async(make_boss)(max_hp=10_000)
    other = await database_sync_to_async(make_boss)(max_hp=5_000)
    for b in (boss, other):
        await database_sync_to_async(boss_go_live)(boss=b)
    sess = await database_sync_to_async(make_session)("eu-1")
    cookie = await database_sync_to_async(_cookie)(staff=True, name="ops")
    comms = [await connect(boss.slug, cookie) for _ in range(6)]
    watcher = await connect(other.slug, cookie)
    for comm in [*comms, watcher]:
        assert (await until(comm, lambda m: m["type"] == "ops"))["series"]  # each socket's own first
    feeds = {key[1]: members for key, members in feeds_running().items() if key[0] == "boss"}
    assert feeds == {boss.slug: 6, other.slug: 1}

    # a change reaches every socket through the one feed: the same text, state first
    await adelta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=sess.epoch, seq=1, amount=700)
    seen = [await until(c, lambda m: m["type"] == "ops" and m["buffered"] == 700) for c in comms]
    assert all("series" not in m for m in seen)
    out = await database_sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    for comm in comms:
        refreshed = await until(comm, lambda m: m["type"] == "ops" and m["state"]["version"] == out.version)
        assert refreshed["state"]["hp"] == 9_300 and refreshed["buffered"] == 0

    # leaving: the last socket of a boss stops its feed; the other boss's feed is untouched
    for comm in comms[:-1]:
        await comm.disconnect()
    assert {k[1]: n for k, n in feeds_running().items() if k[0] == "boss"} == {boss.slug: 1, other.slug: 1}
    await comms[-1].disconnect()
    assert {k[1] for k in feeds_running() if k[0] == "boss"} == {other.slug}
    await watcher.disconnect()
    assert not [k for k in feeds_running() if k[0] == "boss"]


async def test_per_socket_mode_gives_each_socket_its_own_loop(live_boss, hub_cleanup, settings, monkeypatch):
    """OPS_FEED_SHARED=0 is the previous behaviour (the bench's "before" row)."""
    monkeypatch.setattr(ops_consumer, "OPS_REFRESH_INTERVAL_MS", 50)
    settings.OPS_FEED_SHARED = False
    cookie = await database_sync_to_async(_cookie)(staff=True, name="ops")
    comms = [await connect(live_boss.slug, cookie) for _ in range(3)]
    for comm in comms:
        await until(comm, lambda m: m["type"] == "ops" and "series" not in m)
    assert sorted(feeds_running().values()) == [1, 1, 1]
    for comm in comms:
        await comm.disconnect()
    assert not feeds_running()


async def overview_socket(cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver")] + ([(b"cookie", cookie)] if cookie else [])
    comm = WebsocketCommunicator(application, "/ws/ops/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def test_overview_pushes_every_boss_in_one_message(make_boss, make_session, hub_cleanup, monkeypatch):
    monkeypatch.setattr(ops_consumer, "OVERVIEW_REFRESH_INTERVAL_MS", 50)
    # heartbeat intervals of a minute: the two heartbeats below stay "ok" however long a loaded
    # machine takes to reach the first overview
    bosses = [
        await database_sync_to_async(make_boss)(
            max_hp=1_000 * (i + 1), heartbeat_interval_ms=60_000, heartbeat_timeout_ms=120_000
        )
        for i in range(12)
    ]
    for b in bosses[:10]:
        await database_sync_to_async(boss_go_live)(boss=b)
    eu = await database_sync_to_async(make_session)("eu-1")
    us = await database_sync_to_async(make_session)("us-1")
    target = bosses[3]
    for sess in (eu, us):
        await aheartbeat_record(boss_id=target.pk, shard_key=sess.shard_key, epoch=sess.epoch, pending=0)

    # anonymous and non-staff are refused like the dashboard's feed
    player = await database_sync_to_async(_cookie)(staff=False, name="player")
    for cookie, close in ((None, 4401), (player, 4403)):
        comm = await overview_socket(cookie)
        assert json.loads(await comm.receive_from())["type"] == "error"
        assert (await comm.receive_output())["code"] == close
        await comm.disconnect()

    staff = await database_sync_to_async(_cookie)(staff=True, name="ops")
    pages = [await overview_socket(staff) for _ in range(4)]
    first = await until(pages[0], lambda m: m["type"] == "overview")
    for page in pages[1:]:  # each socket joins the feed once its permission check is done
        await until(page, lambda m: m["type"] == "overview")
    rows = {r["slug"]: r for r in first["bosses"]}
    assert set(rows) == {b.slug for b in bosses}
    assert rows[bosses[11].slug]["status"] == "draft" and rows[bosses[0].slug]["status"] == "live"
    assert rows[target.slug]["shards"] == {"ok": 2, "late": 0, "crashed": 0, "left": 0}
    assert [k for k in feeds_running() if k[0] == "overview"] and max(feeds_running().values()) == 4

    await adelta_ingest(boss_id=target.pk, shard_key="eu-1", epoch=eu.epoch, seq=1, amount=400)
    await database_sync_to_async(boss_tick)(boss_id=target.pk, force=True)
    for page in pages:
        msg = await until(
            page,
            lambda m: (
                m["type"] == "overview" and {r["slug"]: r for r in m["bosses"]}[target.slug]["hp"] == 3_600
            ),
        )
        row = {r["slug"]: r for r in msg["bosses"]}[target.slug]
        assert row["version"] == 2 and row["buffered"] == 0 and row["tick_lag_ms"] == 0
    for page in pages:
        await page.disconnect()
    assert not [k for k in feeds_running() if k[0] == "overview"]
