"""Staff is not a role: the admin's lifecycle and shard actions, the ops actions and the ops
sockets check model permissions; cookie-authenticated sockets check the Origin.

A view-only staff user (``view_bossencounter``, ``view_shard``) can look but not act nor read a
rotated token; an operator (``operate_boss``) and a shard manager (``manage_shard``) can.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from bosses.models import BossEncounter
from bosses.selectors import boss_state
from liveops.asgi import application
from shards.models import Shard
from shards.services import shard_create
from transport.hub import get_hub
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

VIEWER = ("view_bossencounter", "view_shard")
OPERATOR = ("view_bossencounter", "operate_boss", "change_bossencounter")
SHARD_MANAGER = ("view_shard", "change_shard", "add_shard", "manage_shard")


def account(name: str, perms: tuple[str, ...], *, staff: bool = True):
    user = get_user_model().objects.create_user(name, password="pw", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cookie_of(user) -> bytes:
    return f"sessionid={client_for(user).cookies['sessionid'].value}".encode()


def admin_action(client: Client, model: str, action: str, pk: int):
    return client.post(
        f"/admin/{model}/", {"action": action, "_selected_action": [str(pk)], "index": "0"}, follow=True
    )


# --- admin ---------------------------------------------------------------------------------


def test_view_only_staff_cannot_run_lifecycle_actions(live_boss):
    viewer = client_for(account("viewer", VIEWER))
    page = viewer.get("/admin/bosses/bossencounter/")
    assert page.status_code == 200 and 'value="pause"' not in page.content.decode()
    for action in ("pause", "end", "reset", "go_live"):
        admin_action(viewer, "bosses/bossencounter", action, live_boss.pk)
        assert boss_state(boss_id=live_boss.pk).status == "live"
    operator = client_for(account("operator", OPERATOR))
    page = operator.get("/admin/bosses/bossencounter/")
    assert 'value="pause"' in page.content.decode()
    admin_action(operator, "bosses/bossencounter", "pause", live_boss.pk)
    assert boss_state(boss_id=live_boss.pk).status == "paused"


def test_view_only_staff_cannot_rotate_retire_or_add_shards():
    shard, _ = shard_create(key="pm-1", name="PM")
    before = Shard.objects.get(pk=shard.pk).token_hash
    viewer = client_for(account("viewer", VIEWER))
    for action in ("rotate_token", "retire"):
        body = admin_action(viewer, "shards/shard", action, shard.pk).content.decode()
        assert "new token" not in body
    after = Shard.objects.get(pk=shard.pk)
    assert after.token_hash == before and after.status == "online"
    assert viewer.get("/admin/shards/shard/add/").status_code == 403
    # change_shard + add_shard without manage_shard: still no token
    half = client_for(account("half", ("view_shard", "change_shard", "add_shard")))
    assert half.get("/admin/shards/shard/add/").status_code == 403
    admin_action(half, "shards/shard", "rotate_token", shard.pk)
    assert Shard.objects.get(pk=shard.pk).token_hash == before
    manager = client_for(account("manager", SHARD_MANAGER))
    body = admin_action(manager, "shards/shard", "rotate_token", shard.pk).content.decode()
    assert "new token" in body and Shard.objects.get(pk=shard.pk).token_hash != before


# --- ops views ---------------------------------------------------------------------------


def test_ops_actions_need_operate_boss(live_boss):
    url = f"/ops/bosses/{live_boss.slug}/pause/"
    nobody = client_for(account("staff-only", ()))
    assert nobody.get(f"/ops/bosses/{live_boss.slug}/").status_code == 403
    assert nobody.get("/ops/").status_code == 403
    viewer = client_for(account("viewer", VIEWER))
    assert viewer.get(f"/ops/bosses/{live_boss.slug}/").status_code == 200
    refused = viewer.post(url, {"confirm": "yes"})
    assert refused.status_code == 403 and "[forbidden]" in refused.content.decode()
    assert "bosses.operate_boss" in refused.content.decode()
    assert viewer.get(url).status_code == 403
    assert boss_state(boss_id=live_boss.pk).status == "live"
    operator = client_for(account("operator", OPERATOR))
    assert operator.post(url, {"confirm": "yes"}).status_code == 302
    assert boss_state(boss_id=live_boss.pk).status == "paused"


# --- sockets -------------------------------------------------------------------------------


async def _open(path: str, headers) -> tuple[WebsocketCommunicator, dict]:
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm, json.loads(await comm.receive_from(timeout=3))


async def _refused(path: str, headers, code: str, close: int) -> None:
    comm, first = await _open(path, headers)
    assert first["type"] == "error" and first["code"] == code, first
    assert (await comm.receive_output(timeout=3)) == {"type": "websocket.close", "code": close}
    await comm.disconnect()


@pytest.fixture
async def hub_cleanup():
    yield
    await get_hub().close()


async def test_ops_sockets_check_the_permission_and_the_origin(live_boss, hub_cleanup):
    boss = await sync_to_async(BossEncounter.objects.get)(pk=live_boss.pk)
    staff_only = await sync_to_async(lambda: cookie_of(account("staff-only", ())))()
    viewer = await sync_to_async(lambda: cookie_of(account("viewer", VIEWER)))()
    for path in (f"/ws/ops/bosses/{boss.slug}/", "/ws/ops/"):
        await _refused(path, [(b"cookie", staff_only)], "forbidden", CloseCode.FORBIDDEN)
        # a page of another site carrying the operator's cookie
        evil = [(b"origin", b"https://evil.example"), (b"host", b"ops.example"), (b"cookie", viewer)]
        await _refused(path, evil, "forbidden", CloseCode.FORBIDDEN)
        for headers in (
            [
                (b"origin", b"https://ops.example"),
                (b"host", b"ops.example"),
                (b"cookie", viewer),
            ],  # same origin
            [(b"origin", b"http://testserver"), (b"cookie", viewer)],  # ALLOWED_HOSTS
            [(b"cookie", viewer)],  # no Origin: not a browser
        ):
            comm, hello = await _open(path, headers)
            assert hello["type"] == "hello", hello
            await comm.disconnect()


async def test_gateway_checks_the_origin_of_session_players_only(live_boss, hub_cleanup, settings):
    settings.SIMULATOR_PLAYER_IDS = True  # for the ?player= connection below
    await sync_to_async(shard_create)(key="og-1", name="OG", kind="hosted")
    player = await sync_to_async(lambda: cookie_of(account("gamer", (), staff=False)))()
    evil = [(b"origin", b"https://evil.example"), (b"host", b"game.example"), (b"cookie", player)]
    await _refused("/ws/shards/og-1/", evil, "forbidden", CloseCode.FORBIDDEN)
    same = [(b"origin", b"https://game.example"), (b"host", b"game.example"), (b"cookie", player)]
    comm, welcome = await _open("/ws/shards/og-1/", same)
    assert welcome["role"] == "player" and welcome["player"].startswith("user:")
    await comm.disconnect()
    # ?player= carries no cookie identity: the Origin does not matter
    comm, welcome = await _open("/ws/shards/og-1/?player=sim-1", evil)
    assert welcome["player"] == "sim-1"
    await comm.disconnect()
