"""One frame never kills a socket or leaks (communicator, real Redis).

A deeply nested frame is refused with ``malformed`` before ``json.loads`` sees it, on every
endpoint, and the socket goes on; ``?resume=`` takes ASCII digits only; and an unexpected
exception in a consumer's receive or connect path becomes an ``error`` frame and close 1011
while the consumer's disconnect cleanup (hub subscription, auth timer) still runs.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from bosses.selectors import boss_ledger
from core.errors import MalformedFrame
from core.wire import MAX_FRAME_DEPTH, parse_frame, too_deep
from liveops.asgi import application
from shards.services import shard_create
from tests.support.waiting import wait_until_async
from transport.consumers import gateway as gateway_consumer
from transport.consumers import ops as ops_consumer
from transport.consumers import state as state_consumer
from transport.hub import get_hub
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

DEEP = "[" * 5000
HOSTILE = [DEEP, "{" * 5000, '{"type":"ping","x":' + "[" * 5000, '{"a":' * 3000 + "1" + "}" * 3000]


async def recv(comm, timeout=3.0) -> dict:
    return json.loads(await comm.receive_from(timeout=timeout))


async def _hub_has(boss, count: int) -> None:
    """The closed sockets left the fan-out hub (their disconnect runs after the close)."""
    await wait_until_async(
        lambda: get_hub().subscriber_count(boss.pk) == count, what=f"{count} hub subscribers"
    )


async def open_ws(path: str, headers=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await comm.connect()
    assert connected
    return comm


def _staff_cookie() -> bytes:
    user = get_user_model().objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


# --- parse_frame ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_parse_frame_refuses_deep_nesting_before_json(text):
    with pytest.raises(MalformedFrame, match="nests deeper"):
        parse_frame(text, None)


def test_depth_bound_is_exact_and_ignores_brackets_in_strings():
    ok = '{"type":"x","a":' + "[" * (MAX_FRAME_DEPTH - 1) + "]" * (MAX_FRAME_DEPTH - 1) + "}"
    assert parse_frame(ok, None)["type"] == "x"
    deep = '{"type":"x","a":' + "[" * MAX_FRAME_DEPTH + "]" * MAX_FRAME_DEPTH + "}"
    with pytest.raises(MalformedFrame):
        parse_frame(deep, None)
    quoted = json.dumps({"type": "x", "s": "[" * 5000, "t": '\\"{' * 100})
    assert parse_frame(quoted, None)["s"] == "[" * 5000
    assert not too_deep("[]" * 30000) and too_deep("[" * 30000 + "]")


# --- every endpoint survives a hostile frame ---------------------------------------------


async def test_viewer_survives_hostile_frames_and_others_are_unaffected(live_boss, cleanup):
    viewers = []
    for _ in range(2):
        comm = await open_ws(f"/ws/bosses/{live_boss.slug}/")
        await recv(comm), await recv(comm)  # hello, snapshot
        viewers.append(comm)
    hostile, other = viewers
    for text in HOSTILE:
        await hostile.send_to(text_data=text)
        err = await recv(hostile)
        assert err["code"] == "malformed" and "nests deeper" in err["detail"], err
    await hostile.send_to(text_data=json.dumps({"type": "ping", "id": 1}))
    assert (await recv(hostile))["type"] == "pong"
    await other.send_to(text_data=json.dumps({"type": "ping", "id": 2}))
    assert (await recv(other))["id"] == 2
    assert get_hub().subscriber_count(live_boss.pk) == 2
    for comm in viewers:
        await comm.disconnect()
    await _hub_has(live_boss, 0)


async def test_gateway_survives_hostile_frames_and_nothing_changes(live_boss, cleanup, settings):
    settings.SIMULATOR_PLAYER_IDS = True  # the player connects with ?player=
    _, token = await sync_to_async(shard_create)(key="hx-1", name="HX")
    await sync_to_async(shard_create)(key="hx-p", name="HX players", kind="hosted")
    srv = await open_ws("/ws/shards/hx-1/", [(b"authorization", f"Bearer {token}".encode())])
    assert (await recv(srv))["type"] == "welcome"
    player = await open_ws("/ws/shards/hx-p/?player=p1")
    assert (await recv(player))["role"] == "player"
    for comm in (srv, player):
        for text in HOSTILE:
            await comm.send_to(text_data=text)
            err = await recv(comm)
            assert err["code"] == "malformed", err
    ledger = await sync_to_async(boss_ledger)(boss_id=live_boss.pk)
    assert ledger.number("accepted") == 0
    await srv.send_to(text_data=json.dumps({"type": "damage", "boss": live_boss.slug, "seq": 1, "amount": 7}))
    assert (await recv(srv))["type"] == "ack"
    await player.send_to(text_data=json.dumps({"type": "attack", "boss": live_boss.slug, "id": 1}))
    assert (await recv(player))["type"] == "attack_ack"
    await srv.disconnect()
    await player.disconnect()


async def test_ops_feed_survives_hostile_frames(live_boss, cleanup):
    cookie = await sync_to_async(_staff_cookie)()
    comm = await open_ws(
        f"/ws/ops/bosses/{live_boss.slug}/", [(b"origin", b"http://testserver"), (b"cookie", cookie)]
    )
    assert (await recv(comm))["type"] == "hello"
    await recv(comm)  # the first ops (and/or state)
    await comm.send_to(text_data=DEEP)
    while (msg := await recv(comm))["type"] != "error":
        pass
    assert msg["code"] == "malformed"
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    while (await recv(comm))["type"] != "pong":
        pass
    await comm.disconnect()
    await _hub_has(live_boss, 0)


# --- ?resume= --------------------------------------------------------------------------------


@pytest.mark.parametrize("resume", ["%C2%B2", "%D9%A3", "1x", "0", "12345678901234567890"])
async def test_resume_takes_ascii_digits_only(live_boss, cleanup, resume):
    _, token = await sync_to_async(shard_create)(key="rs-1", name="RS")
    for bearer in ("bogus-token", token):
        comm = await open_ws(
            f"/ws/shards/rs-1/?resume={resume}", [(b"authorization", f"Bearer {bearer}".encode())]
        )
        err = await recv(comm)
        assert err["code"] == "invalid" and err["field"] == "resume", err
        assert (await comm.receive_output(timeout=3)) == {
            "type": "websocket.close",
            "code": CloseCode.MALFORMED,
        }
        await comm.disconnect()
    comm = await open_ws("/ws/shards/rs-1/?resume=", [(b"authorization", f"Bearer {token}".encode())])
    welcome = await recv(comm)
    assert welcome["type"] == "welcome" and welcome["epoch"] == 1  # an empty resume is no resume
    await comm.disconnect()


# --- an unexpected exception: error frame, close 1011, cleanup runs ---------------------------


async def _expect_internal_error(comm) -> None:
    while (msg := await recv(comm))["type"] != "error":
        pass
    assert msg["code"] == "error" and msg["close"] == CloseCode.INTERNAL_ERROR, msg
    out = await comm.receive_output(timeout=3)
    assert out == {"type": "websocket.close", "code": CloseCode.INTERNAL_ERROR}


async def test_viewer_fault_closes_1011_and_unsubscribes(live_boss, cleanup, monkeypatch):
    other = await open_ws(f"/ws/bosses/{live_boss.slug}/")
    await recv(other), await recv(other)
    comm = await open_ws(f"/ws/bosses/{live_boss.slug}/")
    await recv(comm), await recv(comm)
    assert get_hub().subscriber_count(live_boss.pk) == 2

    def boom(text, data):
        raise RecursionError("simulated")

    monkeypatch.setattr(state_consumer, "parse_frame", boom)
    await comm.send_to(text_data="{}")
    await _expect_internal_error(comm)
    await comm.disconnect()  # what the server sends after the close
    await _hub_has(live_boss, 1)
    monkeypatch.undo()
    await other.send_to(text_data=json.dumps({"type": "ping", "id": 3}))
    assert (await recv(other))["id"] == 3
    await other.disconnect()


async def test_gateway_fault_closes_1011_and_cancels_the_auth_timer(live_boss, cleanup, monkeypatch):
    await sync_to_async(shard_create)(key="gf-1", name="GF")
    seen = []
    real_disconnect = gateway_consumer.ShardGatewayConsumer.disconnect

    async def spy(self, code):
        await real_disconnect(self, code)
        seen.append(self._auth_timer)

    async def boom(self, frame):
        raise ValueError("simulated")

    monkeypatch.setattr(gateway_consumer.ShardGatewayConsumer, "disconnect", spy)
    monkeypatch.setattr(gateway_consumer.ShardGatewayConsumer, "on_ping", boom)
    comm = await open_ws("/ws/shards/gf-1/")  # no token, no player: the auth timer runs
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    await _expect_internal_error(comm)
    await comm.disconnect()
    await wait_until_async(lambda: seen, what="the consumer's disconnect")
    assert len(seen) == 1 and seen[0] is not None and seen[0].cancelled()


async def test_ops_fault_on_connect_closes_1011_and_leaves_no_feed(live_boss, cleanup, monkeypatch):
    cookie = await sync_to_async(_staff_cookie)()

    def boom(slug, with_series, clock=None):
        raise KeyError("simulated")

    monkeypatch.setattr(ops_consumer, "_ops_snapshot_sync", boom)
    comm = await open_ws(
        f"/ws/ops/bosses/{live_boss.slug}/", [(b"origin", b"http://testserver"), (b"cookie", cookie)]
    )
    await _expect_internal_error(comm)
    await comm.disconnect()
    await _hub_has(live_boss, 0)
