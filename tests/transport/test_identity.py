"""Who a player on the shard gateway is (docs/security.md, "Player identity").

Signed tickets (the game's backend vouches), Django users, guests with a signed cookie the
player page issues (no session row), simulator mode (off by default), and the boss's cap on
distinct player ids. Channels' communicator on real Redis; one live uvicorn for tickets.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from websockets.asyncio.client import connect

from bosses import hosted
from bosses.models import BossEncounter
from core import keys
from core.redis import get_redis
from liveops.asgi import application
from shards.services import shard_create
from tests.support import processes
from transport.consumers.state import boss_ref_get
from transport.permissions import guest_id_from_cookie
from worldboss_sdk import player_ticket_sign
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

SECRET = "an-example-ticket-secret-of-32-bytes-or-more"
KEYS = {"game": SECRET.encode()}


@pytest.fixture
def tickets(settings):
    settings.PLAYER_TICKET_KEYS = KEYS
    settings.SIMULATOR_PLAYER_IDS = False


async def open_ws(path: str, headers=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await comm.connect()
    assert connected
    return comm


async def recv(comm, timeout=3.0) -> dict:
    return json.loads(await comm.receive_from(timeout=timeout))


async def refused(path: str, code: str, close: int, headers=None) -> dict:
    comm = await open_ws(path, headers)
    frame = await recv(comm)
    assert frame["type"] == "error" and frame["code"] == code, frame
    assert await comm.receive_output(timeout=3) == {"type": "websocket.close", "code": close}
    return frame


async def attack(comm, slug: str) -> dict:
    await comm.send_to(text_data=json.dumps({"type": "attack", "boss": slug, "id": 1}))
    return await recv(comm)


def sign(player: str = "hero-7", **kw) -> str:
    return player_ticket_sign(secret=SECRET, key_id="game", player=player, **kw)


def hosted_shard(key: str) -> None:
    shard_create(key=key, name=key, kind="hosted")


def credited(boss_id: int) -> dict[str, str]:
    return get_redis().hgetall(keys.BossKeys(boss_id).pbuf)


# --- simulator mode -------------------------------------------------------------------------


async def test_free_form_player_ids_are_refused_unless_simulator_mode_is_on(live_boss, settings, cleanup):
    await sync_to_async(hosted_shard)("id-1")
    assert settings.SIMULATOR_PLAYER_IDS is False  # the default
    frame = await refused("/ws/shards/id-1/?player=user:1", "unauthorized", CloseCode.UNAUTHORIZED)
    assert "simulator mode" in frame["detail"] and "LIVEOPS_SIMULATOR_PLAYERS" in frame["detail"]
    await refused("/ws/shards/id-1/?player=alice", "unauthorized", CloseCode.UNAUTHORIZED)
    settings.SIMULATOR_PLAYER_IDS = True
    comm = await open_ws("/ws/shards/id-1/?player=alice")
    assert (await recv(comm))["player"] == "alice"
    assert (await attack(comm, live_boss.slug))["type"] == "attack_ack"
    await comm.disconnect()


async def test_no_identity_at_all_is_refused_on_a_hosted_shard(live_boss, cleanup):
    await sync_to_async(hosted_shard)("id-2")
    frame = await refused("/ws/shards/id-2/", "unauthorized", CloseCode.UNAUTHORIZED)
    assert "?ticket=" in frame["detail"]


# --- tickets --------------------------------------------------------------------------------


async def test_a_valid_ticket_identifies_the_player(live_boss, tickets, cleanup):
    await sync_to_async(hosted_shard)("tk-1")
    comm = await open_ws(f"/ws/shards/tk-1/?ticket={sign(shard='tk-1')}")
    assert (await recv(comm))["player"] == "hero-7"
    ack = await attack(comm, live_boss.slug)
    assert ack["type"] == "attack_ack"
    await hosted.hosted_shard_get(shard_key="tk-1").flush_now()
    assert await sync_to_async(credited)(live_boss.pk) == {"hero-7": str(ack["damage"])}
    await comm.disconnect()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: sign(shard="tk-2")[:-3] + "AAA", "ticket_invalid"),  # forged signature
        (lambda: player_ticket_sign(secret="x" * 40, key_id="game", player="hero-7"), "ticket_invalid"),
        (lambda: player_ticket_sign(secret=SECRET, key_id="old", player="hero-7"), "ticket_invalid"),
        (lambda: sign(shard="another-shard"), "ticket_invalid"),
        (lambda: sign(player="user:1"), "ticket_invalid"),  # a platform id
        (lambda: sign(ttl_s=60, now_s=time.time() - 120), "ticket_expired"),
        (lambda: "not-a-ticket", "ticket_invalid"),
    ],
    ids=["forged", "wrong-secret", "unknown-kid", "wrong-shard", "reserved-id", "expired", "garbage"],
)
async def test_bad_tickets_are_refused_and_credit_nothing(live_boss, tickets, cleanup, make, code):
    await sync_to_async(hosted_shard)("tk-2")
    await refused(f"/ws/shards/tk-2/?ticket={make()}", code, CloseCode.UNAUTHORIZED)
    assert await sync_to_async(credited)(live_boss.pk) == {}
    assert "tk-2" not in hosted._gateways.get(asyncio.get_running_loop(), {})  # no hosted session


async def test_a_ticket_for_one_boss_attacks_that_boss_only(make_boss, tickets, cleanup):
    from bosses.services import boss_go_live

    mine, other = await sync_to_async(make_boss)(), await sync_to_async(make_boss)()
    for boss in (mine, other):
        await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(hosted_shard)("tk-3")
    comm = await open_ws(f"/ws/shards/tk-3/?ticket={sign(boss=mine.slug)}")
    assert (await recv(comm))["type"] == "welcome"
    assert (await attack(comm, other.slug))["code"] == "ticket_invalid"
    assert (await attack(comm, mine.slug))["type"] == "attack_ack"
    await comm.disconnect()


async def test_without_ticket_keys_no_ticket_is_accepted(live_boss, settings, cleanup):
    settings.PLAYER_TICKET_KEYS = {}
    await sync_to_async(hosted_shard)("tk-4")
    frame = await refused(f"/ws/shards/tk-4/?ticket={sign()}", "unauthorized", CloseCode.UNAUTHORIZED)
    assert "PLAYER_TICKET_KEYS" in frame["detail"]


@pytest.mark.process
def test_a_ticket_works_end_to_end_on_a_live_server(live_boss):
    """uvicorn with PLAYER_TICKET_KEYS and simulator mode off (the default)."""
    shard_create(key="live-tk", name="live", kind="hosted")
    server, port = processes.start_server(PLAYER_TICKET_KEYS=f"game:{SECRET}")
    base = f"ws://127.0.0.1:{port}/ws/shards/live-tk/"

    async def run() -> tuple[dict, dict, dict]:
        async with connect(f"{base}?ticket={sign(shard='live-tk')}") as ws:
            welcome = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "attack", "boss": live_boss.slug, "id": 1}))
            ack = json.loads(await ws.recv())
        async with connect(f"{base}?player=user:1") as ws:
            refusal = json.loads(await ws.recv())
            await ws.wait_closed()
            refusal["close"] = ws.close_code
        return welcome, ack, refusal

    try:
        welcome, ack, refusal = asyncio.run(run())
        assert welcome["player"] == "hero-7" and ack["type"] == "attack_ack"
        assert (refusal["code"], refusal["close"]) == ("unauthorized", CloseCode.UNAUTHORIZED)
        deadline = time.monotonic() + 10
        while credited(live_boss.pk) != {"hero-7": str(ack["damage"])}:  # the gateway flushed it
            assert time.monotonic() < deadline, credited(live_boss.pk)
            time.sleep(0.05)
    finally:
        server.stop()


# --- users and guests -----------------------------------------------------------------------


def _guest_page(slug: str, shard: str, client: Client | None = None):
    client = client or Client()
    return client, client.get(f"/play/{slug}/?shard={shard}")


def test_the_play_page_issues_a_guest_cookie_and_writes_no_session(live_boss, settings):
    hosted_shard("gp-1")
    before = Session.objects.count()
    guests = set()
    for _ in range(5):  # cookie-less visitors
        _, resp = _guest_page(live_boss.slug, "gp-1")
        assert resp.status_code == 200
        cookie = resp.cookies[settings.GUEST_COOKIE_NAME]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
        guest = guest_id_from_cookie(cookie.value)
        assert guest is not None and guest.startswith("guest:")
        guests.add(guest)
        assert "sessionid" not in resp.cookies
    assert Session.objects.count() == before == 0  # no database session row for a guest
    assert len(guests) == 5  # random, server-issued
    # a returning guest keeps its id: no new cookie
    client, first = _guest_page(live_boss.slug, "gp-1")
    _, again = _guest_page(live_boss.slug, "gp-1", client)
    assert settings.GUEST_COOKIE_NAME not in again.cookies
    assert again.context["config"]["identity"] == "guest"
    # a tampered cookie is not an identity
    assert guest_id_from_cookie(first.cookies[settings.GUEST_COOKIE_NAME].value[:-2] + "xx") is None
    assert guest_id_from_cookie("guest:AAAAAAAAAAAAAAAAAAAAAA") is None  # unsigned


def test_no_guest_cookie_where_the_boss_admits_no_guests(live_boss, settings):
    hosted_shard("gp-2")
    BossEncounter.objects.filter(pk=live_boss.pk).update(allow_guests=False)
    _, resp = _guest_page(live_boss.slug, "gp-2")
    assert resp.status_code == 200 and settings.GUEST_COOKIE_NAME not in resp.cookies
    assert resp.context["config"]["identity"] is None and "sign in" in resp.content.decode()
    user = get_user_model().objects.create_user("player-1", password="pw")
    client = Client()
    client.force_login(user)
    resp = client.get(f"/play/{live_boss.slug}/?shard=gp-2")
    assert resp.context["config"]["identity"] == "user" and settings.GUEST_COOKIE_NAME not in resp.cookies


def _cookie_header(name: str, value: str) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", f"{name}={value}".encode())]


async def test_the_gateway_takes_the_guest_cookie_and_the_boss_decides(live_boss, settings, cleanup):
    await sync_to_async(hosted_shard)("gp-3")
    _, resp = await sync_to_async(_guest_page)(live_boss.slug, "gp-3")
    value = resp.cookies[settings.GUEST_COOKIE_NAME].value
    comm = await open_ws("/ws/shards/gp-3/", _cookie_header(settings.GUEST_COOKIE_NAME, value))
    welcome = await recv(comm)
    assert welcome["player"] == guest_id_from_cookie(value)
    assert (await attack(comm, live_boss.slug))["type"] == "attack_ack"
    await comm.disconnect()
    # tampered: no identity
    await refused(
        "/ws/shards/gp-3/",
        "unauthorized",
        CloseCode.UNAUTHORIZED,
        _cookie_header(settings.GUEST_COOKIE_NAME, value + "x"),
    )
    # another site's page carrying the cookie: refused by its Origin
    evil = [
        *_cookie_header(settings.GUEST_COOKIE_NAME, value),
        (b"origin", b"https://evil.example"),
        (b"host", b"game.example"),
    ]
    settings.ALLOWED_HOSTS = ["game.example"]
    await refused("/ws/shards/gp-3/", "forbidden", CloseCode.FORBIDDEN, evil)
    # the boss stops admitting guests: their attacks are refused (read within a few seconds)
    from transport.consumers import state

    await sync_to_async(BossEncounter.objects.filter(pk=live_boss.pk).update)(allow_guests=False)
    state._boss_cache.clear()  # what BOSS_CACHE_TTL_S does in a few seconds
    comm = await open_ws("/ws/shards/gp-3/", _cookie_header(settings.GUEST_COOKIE_NAME, value))
    await recv(comm)
    err = await attack(comm, live_boss.slug)
    assert err["code"] == "forbidden" and "guests" in err["detail"]
    await comm.disconnect()


async def test_a_signed_in_user_is_user_pk(live_boss, cleanup):
    await sync_to_async(hosted_shard)("us-9")

    def session_cookie() -> tuple[int, str]:
        user = get_user_model().objects.create_user("fighter", password="pw")
        client = Client()
        client.force_login(user)
        return user.pk, client.cookies["sessionid"].value

    pk, sid = await sync_to_async(session_cookie)()
    comm = await open_ws("/ws/shards/us-9/", _cookie_header("sessionid", sid))
    assert (await recv(comm))["player"] == f"user:{pk}"
    await comm.disconnect()


# --- the cap on player ids ------------------------------------------------------------------


async def test_an_id_flood_is_capped_and_real_players_keep_attacking(make_boss, settings, cleanup):
    from bosses.services import boss_go_live

    settings.SIMULATOR_PLAYER_IDS = True
    settings.MAX_PLAYERS_PER_BOSS = 20
    boss = await sync_to_async(make_boss)(attacks_per_second=50)
    await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(hosted_shard)("cap-1")
    real = await open_ws("/ws/shards/cap-1/?player=real-player")
    await recv(real)
    assert (await attack(real, boss.slug))["type"] == "attack_ack"
    # the flood: many new ids through one process's hosted shard (its in-memory player table)
    shard = hosted.hosted_shard_get(shard_key="cap-1")
    ref = await boss_ref_get(slug=boss.slug)
    outcomes: dict[str, int] = {}
    for n in range(200):
        try:
            await shard.attack(boss=ref, player=f"flood-{n}")
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except Exception as exc:
            outcomes[getattr(exc, "code", repr(exc))] = outcomes.get(getattr(exc, "code", repr(exc)), 0) + 1
    assert outcomes == {"ok": 19, "too_many_players": 181}, outcomes
    roster = await sync_to_async(get_redis().scard)(keys.BossKeys(boss.pk).roster)
    assert roster == 20
    # the real player is not locked out; a new one gets the clear refusal
    for _ in range(3):
        assert (await attack(real, boss.slug))["type"] == "attack_ack"
    late = await open_ws("/ws/shards/cap-1/?player=late-comer")
    await recv(late)
    err = await attack(late, boss.slug)
    assert err["code"] == "too_many_players" and "keep playing" in err["detail"]
    await real.disconnect()
    await late.disconnect()


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_ENV": "production", "LIVEOPS_SIMULATOR_PLAYERS": "1"}, "LIVEOPS_SIMULATOR_PLAYERS=1"),
        ({"PLAYER_TICKET_KEYS": "game:too-short"}, "at least 32"),
        ({"PLAYER_TICKET_KEYS": "no-secret-here"}, "<kid>:<secret>"),
    ],
)
def test_identity_settings_refuse_to_start(env: dict[str, str], message: str) -> None:
    import os
    import subprocess
    import sys

    base = {
        k: v for k, v in os.environ.items() if k not in ("LIVEOPS_SIMULATOR_PLAYERS", "PLAYER_TICKET_KEYS")
    }
    prod = {"SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "game.example"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**base, "DJANGO_SETTINGS_MODULE": "liveops.settings", **prod, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=processes.ROOT,
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
