"""Hostile values (NUL bytes, non-ASCII digits, non-integer numbers) on every endpoint get a
clear error and change nothing; on PostgreSQL a NUL byte must never reach a query (it would
raise there, where SQLite would only miss)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from bosses.selectors import boss_ledger
from liveops.asgi import application
from shards.services import shard_create
from transport.hub import get_hub
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

NUL_SLUGS = ["a\x00b", "\x00", "boss\x00" + "x" * 10]
# numbers a client might send for an integer field (fullwidth and Arabic-Indic digits that
# Python's int() would take, a superscript, floats, a bool...): none of them is one
ODD_NUMBERS = [
    "\uff11\uff12",
    "\u0661\u0662",
    "\u00b2",
    "12",
    12.5,
    1e3,
    -0.0,
    True,
    None,
    [],
    {},
    2**64,
    -5,
    0,
]


async def _frames_until_close(comm) -> tuple[list[dict], int | None]:
    frames: list[dict] = []
    while True:
        out = await comm.receive_output(timeout=3)
        if out["type"] == "websocket.close":
            return frames, out.get("code")
        frames.append(json.loads(out["text"]))


@pytest.mark.parametrize("slug", NUL_SLUGS)
async def test_viewer_socket_with_a_nul_slug_is_an_unknown_boss(live_boss, cleanup, slug):
    comm = WebsocketCommunicator(application, f"/ws/bosses/{slug}/")
    connected, _ = await comm.connect()
    assert connected
    frames, code = await _frames_until_close(comm)
    assert code == CloseCode.UNKNOWN_BOSS, (frames, code)
    assert frames[-1]["code"] == "unknown_boss"
    await comm.disconnect()
    assert get_hub().subscriber_count(live_boss.pk) == 0


@pytest.mark.parametrize("key", NUL_SLUGS)
async def test_shard_socket_with_a_nul_key_is_refused_clearly(live_boss, cleanup, key):
    comm = WebsocketCommunicator(application, f"/ws/shards/{key}/", headers=[(b"authorization", b"Bearer x")])
    connected, _ = await comm.connect()
    assert connected
    frames, code = await _frames_until_close(comm)
    assert code in (CloseCode.UNKNOWN_BOSS, CloseCode.UNAUTHORIZED), (frames, code)
    assert frames and frames[-1]["type"] == "error" and frames[-1]["code"] != "error", frames


async def test_game_server_frames_with_nul_slugs_and_odd_numbers_change_nothing(live_boss, cleanup):
    _, token = await sync_to_async(shard_create)(key="odd-1", name="Odd")

    async def connect():
        comm = WebsocketCommunicator(
            application, "/ws/shards/odd-1/", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        assert (await comm.connect())[0]
        assert json.loads(await comm.receive_from(timeout=3))["type"] == "welcome"
        return comm

    bad = [{"type": "damage", "boss": slug, "seq": 1, "amount": 5} for slug in NUL_SLUGS]
    bad += [{"type": "damage", "boss": live_boss.slug, "seq": 1, "amount": n} for n in ODD_NUMBERS]
    bad += [{"type": "damage", "boss": live_boss.slug, "seq": n, "amount": 5} for n in ODD_NUMBERS]
    bad += [{"type": "heartbeat", "boss": live_boss.slug, "pending": n} for n in ODD_NUMBERS if n != 0]
    texts = [json.dumps(frame) for frame in bad] + [
        f'{{"type":"damage","boss":"{live_boss.slug}","seq":1,"amount":{word}}}'
        for word in ("NaN", "Infinity", "-Infinity", "1" * 400)
    ]
    # a few per socket: a socket that sends MAX_BAD_FRAMES bad frames is closed by design
    for start in range(0, len(texts), 10):
        comm = await connect()
        for text in texts[start : start + 10]:
            await comm.send_to(text_data=text)
            reply = json.loads(await comm.receive_from(timeout=3))
            assert reply["type"] == "error" and reply["code"] != "error", (text, reply)
        await comm.disconnect()
    comm = await connect()
    ledger = await sync_to_async(boss_ledger)(boss_id=live_boss.pk)
    assert ledger.number("accepted") == 0
    # and the socket still works
    await comm.send_to(
        text_data=json.dumps({"type": "damage", "boss": live_boss.slug, "seq": 1, "amount": 5})
    )
    assert json.loads(await comm.receive_from(timeout=3))["type"] == "ack"
    await comm.disconnect()


@pytest.mark.parametrize(
    "path",
    [
        "/play/{slug}/?shard=%00",
        "/play/{slug}/?shard=a%00b",
        "/api/bosses/a%00b/state",
        "/play/a%00b/",
        "/ops/bosses/a%00b/",
    ],
)
def test_http_endpoints_answer_nul_bytes_without_a_server_error(live_boss, path, admin_client):
    for client in (Client(), admin_client):
        response = client.get(path.format(slug=live_boss.slug))
        assert response.status_code in (400, 403, 404), (path, response.status_code)
