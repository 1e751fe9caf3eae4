"""The database unreachable, the hot path on Redis alone (docs/faults.md, "Database outage").

In process, real Redis: the default connection is pointed where no database answers
(tests/support/database.py), so every ORM call raises the ``OperationalError`` of an outage.
Damage and heartbeats go on being acknowledged once the gateway's boss cache has expired,
a game server resumes its session on a new socket, viewers connect, and the state API
answers from the authority; what truly needs the database answers ``authority_unavailable``
(try again), never 1011 or a 500. The whole stack through a stopped PostgreSQL is
tests/faults/test_database_outage.py.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from liveops.asgi import application
from shards.services import shard_create
from tests.support.database import adatabase_unreachable, database_unreachable
from transport import views
from transport.consumers import state as state_consumer
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def connect(path: str, token: str | None = None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token is not None else []
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def recv(comm: WebsocketCommunicator) -> dict:
    return json.loads(await comm.receive_from(timeout=5))


async def expect_close(comm: WebsocketCommunicator, code: int, error: str) -> None:
    frame = await recv(comm)
    assert frame["type"] == "error" and frame["code"] == error, frame
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": code}


@pytest.fixture
def fight(make_boss):
    boss = make_boss(max_hp=1_000_000)
    boss_go_live(boss=boss)
    shard, token = shard_create(key="far-1", name="Far 1")
    return boss, shard, token


async def test_damage_heartbeats_and_a_resume_go_on_while_the_database_is_unreachable(
    fight, monkeypatch, cleanup
):
    boss, shard, token = fight
    # Every frame asks the database again (the cache is always expired): the outage is
    # felt at once, not after the 5 s of BOSS_CACHE_TTL_S.
    monkeypatch.setattr(state_consumer, "BOSS_CACHE_TTL_S", 0.0)
    comm = await connect(f"/ws/shards/{shard.key}/", token)
    welcome = await recv(comm)
    epoch = welcome["epoch"]
    await comm.send_to(text_data=json.dumps({"type": "damage", "boss": boss.slug, "seq": 1, "amount": 100}))
    assert (await recv(comm))["type"] == "ack"

    async with adatabase_unreachable():
        for seq in range(2, 6):
            frame = {"type": "damage", "boss": boss.slug, "seq": seq, "amount": 100}
            await comm.send_to(text_data=json.dumps(frame))
            ack = await recv(comm)
            assert (ack["type"], ack["seq"], ack["duplicate"]) == ("ack", seq, False), ack
        await comm.send_to(text_data=json.dumps({"type": "heartbeat", "boss": boss.slug, "pending": 0}))
        assert (await recv(comm))["type"] == "heartbeat_ack"
        await comm.disconnect()

        # A new socket resumes the session: its token checked against the Redis copy.
        again = await connect(f"/ws/shards/{shard.key}/?resume={epoch}", token)
        welcome = await recv(again)
        assert (welcome["type"], welcome["epoch"], welcome["resumed"]) == ("welcome", epoch, True)
        await again.send_to(
            text_data=json.dumps({"type": "damage", "boss": boss.slug, "seq": 6, "amount": 50})
        )
        assert (await recv(again))["seq"] == 6
        await again.disconnect()

        # A wrong token is refused as ever; a new session waits for the database.
        wrong = await connect(f"/ws/shards/{shard.key}/?resume={epoch}", "not-the-token")
        await expect_close(wrong, CloseCode.UNAUTHORIZED, "unauthorized")
        fresh = await connect(f"/ws/shards/{shard.key}/", token)
        await expect_close(fresh, CloseCode.TRY_AGAIN, "authority_unavailable")
        unknown = await connect("/ws/shards/never-seen/", token)
        await expect_close(unknown, CloseCode.TRY_AGAIN, "authority_unavailable")

    await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=boss)
    assert report.ok, report.problems
    assert report.accepted == 550 and report.hp == 1_000_000 - 550


async def test_viewers_connect_on_the_cached_boss_and_a_cold_one_is_told_to_retry(
    fight, make_boss, monkeypatch, cleanup
):
    boss, _, _ = fight
    other = await sync_to_async(make_boss)(max_hp=500)
    monkeypatch.setattr(state_consumer, "BOSS_CACHE_TTL_S", 0.0)
    first = await connect(f"/ws/bosses/{boss.slug}/")  # this process reads the boss once
    assert (await recv(first))["type"] == "hello"
    assert (await recv(first))["type"] == "state"
    async with adatabase_unreachable():
        viewer = await connect(f"/ws/bosses/{boss.slug}/")
        assert (await recv(viewer))["type"] == "hello"
        snap = await recv(viewer)
        assert (snap["type"], snap["hp"], snap["status"]) == ("state", 1_000_000, "live")
        cold = await connect(f"/ws/bosses/{other.slug}/")
        await expect_close(cold, CloseCode.TRY_AGAIN, "authority_unavailable")
        await viewer.disconnect()
    await first.disconnect()


def test_the_state_api_answers_from_the_authority_while_the_database_is_unreachable(fight, make_boss):
    boss, _, _ = fight
    draft = make_boss(max_hp=500)  # no authority: nothing to answer from without the database
    shard_create(key="near-1", name="Near 1", kind="hosted")  # the public list: hosted shards
    client = Client()
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    before = client.get(f"/api/bosses/{boss.slug}/state").json()
    assert before["name"] == boss.name and [s["key"] for s in before["shards"]] == ["near-1"]
    with database_unreachable():
        resp = client.get(f"/api/bosses/{boss.slug}/state")
        assert resp.status_code == 200 and resp.json() == before
        views._known_bosses.clear()  # a process that never read it: found in Redis by slug
        resp = client.get(f"/api/bosses/{boss.slug}/state")
        assert resp.status_code == 200
        assert (resp.json()["hp"], resp.json()["version"]) == (before["hp"], before["version"])
        resp = client.get(f"/api/bosses/{draft.slug}/state")
        assert resp.status_code == 503 and resp["Retry-After"] == "1"
        assert resp.json()["code"] == "authority_unavailable"
    assert staff.get(f"/api/bosses/{draft.slug}/state").status_code == 200
    assert client.get(f"/api/bosses/{draft.slug}/state").status_code == 404  # drafts are not public
