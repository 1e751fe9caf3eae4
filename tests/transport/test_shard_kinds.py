"""Shard kinds (docs/security.md, "Shard kinds"): players only on hosted shards, a game
server's token only on its own kind; a player attack on a game server's key changes nothing."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from bosses import hosted
from core import keys
from core.errors import WrongShardKind
from core.redis import get_redis
from liveops.asgi import application
from shards.models import Shard, ShardKind
from shards.services import shard_create
from transport.consumers.state import boss_ref_get
from worldboss_sdk import player_ticket_sign
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

SECRET = "an-example-ticket-secret-of-32-bytes-or-more"


async def closed_with(path: str, code: str, close: int, headers=None) -> None:
    comm = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await comm.connect()
    assert connected
    frame = json.loads(await comm.receive_from(timeout=3))
    assert frame["type"] == "error" and frame["code"] == code, frame
    assert await comm.receive_output(timeout=3) == {"type": "websocket.close", "code": close}


def figures(key: str) -> tuple[int, str]:
    shard = Shard.objects.get(key=key)
    return shard.current_epoch, shard.status


def test_new_shards_are_game_servers_unless_created_hosted(db):
    assert shard_create(key="k-1", name="k")[0].kind == ShardKind.GAME_SERVER
    assert shard_create(key="k-2", name="k", kind="hosted")[0].kind == ShardKind.HOSTED


async def test_player_attacks_on_a_game_servers_shard_change_nothing(live_boss, settings, cleanup):
    settings.SIMULATOR_PLAYER_IDS = True
    settings.PLAYER_TICKET_KEYS = {"game": SECRET.encode()}
    await sync_to_async(shard_create)(key="gs-1", name="GS")
    before = await sync_to_async(figures)("gs-1")
    ticket = player_ticket_sign(secret=SECRET, key_id="game", player="hero", shard="gs-1")

    def user_cookie() -> bytes:
        client = Client()
        client.force_login(get_user_model().objects.create_user("someone", password="pw"))
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    for path in ("/ws/shards/gs-1/?player=hero", f"/ws/shards/gs-1/?ticket={ticket}"):
        await closed_with(path, "wrong_shard_kind", CloseCode.FORBIDDEN)
    # a browser's session cookie on a game server's shard identifies no one: it must authenticate
    comm = WebsocketCommunicator(
        application, "/ws/shards/gs-1/", headers=[(b"cookie", await sync_to_async(user_cookie)())]
    )
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"type": "attack", "boss": live_boss.slug}))
    assert json.loads(await comm.receive_from(timeout=3))["code"] == "unauthorized"
    await comm.disconnect()
    # and the process's hosted shard never opens a session under that key
    ref = await boss_ref_get(slug=live_boss.slug)
    with pytest.raises(WrongShardKind):
        await hosted.hosted_shard_get(shard_key="gs-1").attack(boss=ref, player="hero")
    assert await sync_to_async(figures)("gs-1") == before
    k = keys.BossKeys(live_boss.pk)
    r = get_redis()
    assert await sync_to_async(r.hgetall)(k.pbuf) == {} and await sync_to_async(r.hgetall)(k.contrib) == {}
    assert await sync_to_async(r.hget)(keys.SHARD_EPOCHS, "gs-1") is None


async def test_a_game_servers_token_is_refused_on_a_hosted_shard(live_boss, cleanup):
    _, token = await sync_to_async(shard_create)(key="hs-1", name="HS", kind="hosted")
    before = await sync_to_async(figures)("hs-1")
    bearer = [(b"authorization", f"Bearer {token}".encode())]
    await closed_with("/ws/shards/hs-1/", "wrong_shard_kind", CloseCode.FORBIDDEN, bearer)
    # a wrong token learns nothing about the kind
    await closed_with(
        "/ws/shards/hs-1/", "unauthorized", CloseCode.UNAUTHORIZED, [(b"authorization", b"Bearer nope")]
    )
    assert await sync_to_async(figures)("hs-1") == before


def test_the_player_page_offers_hosted_shards_only(live_boss):
    shard_create(key="pp-hosted", name="Hosted one", kind="hosted")
    shard_create(key="pp-server", name="Server one")
    page = Client().get(f"/play/{live_boss.slug}/").content.decode()
    assert "pp-hosted" in page and "pp-server" not in page
    assert Client().get(f"/play/{live_boss.slug}/?shard=pp-server").status_code == 404
