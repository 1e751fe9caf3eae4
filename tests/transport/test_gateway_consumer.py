"""/ws/shards/<shard>/ through Channels' communicator against real Redis.

Token auth, damage/ack/dedupe, heartbeats, every bad frame (error frame or close code,
nothing applied, other clients unaffected), platform-hosted players: damage range, rate
limit, the hosted buffer's delivery and fencing.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from bosses import hosted as gateway
from bosses.sagas.crash import session_fence, shard_retire
from bosses.selectors import boss_ledger
from bosses.services import boss_pause, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from liveops.asgi import application
from shards.services import shard_create, shard_token_rotate
from worldboss_sdk.protocol import PROTOCOL_VERSION, CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
async def gateways():
    """Stop this loop's hosted shards at the end of a test."""
    yield
    for shard in list(gateway._gateways.get(asyncio.get_running_loop(), {}).values()):
        await shard.close(flush=False)


def new_shard(key: str):
    return shard_create(key=key, name=key.upper())


def hosted_shard(key: str):
    return shard_create(key=key, name=key.upper(), kind="hosted")


@pytest.fixture
def simulator(settings):
    """Simulator mode: the players below connect with ?player=<id> (docs/security.md)."""
    settings.SIMULATOR_PLAYER_IDS = True


async def ws(path: str, token: str | None = None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token is not None else []
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def recv(comm, timeout=3.0) -> dict:
    return json.loads(await comm.receive_from(timeout=timeout))


async def expect_close(comm, code: int, error: str | None = None) -> None:
    if error is not None:
        frame = await recv(comm)
        assert frame["type"] == "error" and frame["code"] == error, frame
    out = await comm.receive_output(timeout=3)
    assert out == {"type": "websocket.close", "code": code}


async def server(key: str, token: str) -> tuple[WebsocketCommunicator, int]:
    comm = await ws(f"/ws/shards/{key}/", token)
    welcome = await recv(comm)
    assert welcome["type"] == "welcome" and welcome["role"] == "server" and welcome["v"] == PROTOCOL_VERSION
    return comm, welcome["epoch"]


def ledger_figures(boss):
    ledger = boss_ledger(boss_id=boss.pk)
    return ledger.state, ledger.buffers, ledger.settled


async def send(comm, **frame) -> dict:
    await comm.send_to(text_data=json.dumps(frame))
    return await recv(comm)


# --- game servers ---------------------------------------------------------------------


async def test_header_auth_damage_ack_and_duplicate(live_boss):
    _, token = await sync_to_async(new_shard)("eu-1")
    comm, epoch = await server("eu-1", token)
    assert epoch == 1
    ack = await send(comm, type="damage", boss=live_boss.slug, seq=1, amount=500, breakdown={"alice": 300})
    assert ack == {"type": "ack", "boss": live_boss.slug, "seq": 1, "duplicate": False}
    again = await send(comm, type="damage", boss=live_boss.slug, seq=1, amount=500)
    assert again == {"type": "ack", "boss": live_boss.slug, "seq": 1, "duplicate": True}
    hb = await send(
        comm, type="heartbeat", boss=live_boss.slug, pending=70, inflight={"seq": 2, "amount": 30}
    )
    assert hb == {
        "type": "heartbeat_ack",
        "boss": live_boss.slug,
        "last_seq": 1,
        "held": 100,
        "durable_seq": 0,
    }
    ledger = await sync_to_async(boss_ledger)(boss_id=live_boss.pk)
    assert ledger.number("accepted") == 500 and ledger.buffers == {"eu-1:1": 500}
    assert await sync_to_async(get_redis().hget)(keys.BossKeys(live_boss.pk).pbuf, "alice") == "300"
    await comm.disconnect()


async def test_auth_frame_and_each_connection_gets_a_new_epoch(live_boss):
    _, token = await sync_to_async(new_shard)("eu-2")
    first, e1 = await server("eu-2", token)
    comm = await ws("/ws/shards/eu-2/")
    welcome = await send(comm, type="auth", token=token)
    assert welcome["role"] == "server" and welcome["epoch"] == e1 + 1
    # both sessions start at seq 1 and dedupe independently
    for c in (first, comm):
        assert (await send(c, type="damage", boss=live_boss.slug, seq=1, amount=10))["duplicate"] is False
    assert (await sync_to_async(boss_ledger)(boss_id=live_boss.pk)).number("accepted") == 20


@pytest.mark.parametrize("case", ["missing", "empty", "wrong", "rotated", "other_shard"])
async def test_bad_tokens_are_refused_with_4401(live_boss, case):
    shard, token = await sync_to_async(new_shard)("eu-3")
    _, other_token = await sync_to_async(new_shard)("us-1")
    if case == "rotated":
        await sync_to_async(shard_token_rotate)(shard=shard)
    before = await sync_to_async(ledger_figures)(live_boss)
    if case == "missing":  # no header, no auth frame: damage is refused and the socket closed
        comm = await ws("/ws/shards/eu-3/")
        await comm.send_to(
            text_data=json.dumps({"type": "damage", "boss": live_boss.slug, "seq": 1, "amount": 5})
        )
        await expect_close(comm, CloseCode.UNAUTHORIZED, "unauthorized")
    else:
        presented = {"empty": "", "wrong": "not-the-token", "rotated": token, "other_shard": other_token}[
            case
        ]
        comm = await ws("/ws/shards/eu-3/", presented)
        await expect_close(comm, CloseCode.UNAUTHORIZED, "unauthorized")
    assert await sync_to_async(ledger_figures)(live_boss) == before


async def test_retired_and_unknown_shards_are_closed(live_boss):
    shard, token = await sync_to_async(new_shard)("old-1")
    await sync_to_async(shard_retire)(shard=shard)
    comm = await ws("/ws/shards/old-1/", token)
    await expect_close(comm, CloseCode.FORBIDDEN, "unauthorized")
    comm = await ws("/ws/shards/nope/", token)
    await expect_close(comm, CloseCode.UNKNOWN_BOSS, "unknown_shard")


BAD_FRAMES = [
    ("not json", "text", "{damage", "malformed"),
    ("binary", "bytes", b"\x81\x00", "malformed"),
    ("array", "text", "[]", "malformed"),
    ("unknown type", "json", {"type": "heal", "boss": "B", "amount": 5}, "unknown_type"),
    ("type not a string", "json", {"type": 7}, "malformed"),
    ("boss not a string", "json", {"type": "damage", "boss": 5, "seq": 1, "amount": 5}, "malformed"),
    ("wrong boss", "json", {"type": "damage", "boss": "no-such-boss", "seq": 1, "amount": 5}, "unknown_boss"),
    ("negative amount", "json", {"type": "damage", "boss": "B", "seq": 1, "amount": -5}, "invalid_amount"),
    ("zero amount", "json", {"type": "damage", "boss": "B", "seq": 1, "amount": 0}, "invalid_amount"),
    ("float amount", "json", {"type": "damage", "boss": "B", "seq": 1, "amount": 2.5}, "invalid_amount"),
    ("string amount", "json", {"type": "damage", "boss": "B", "seq": 1, "amount": "5"}, "invalid_amount"),
    ("bool amount", "json", {"type": "damage", "boss": "B", "seq": 1, "amount": True}, "invalid_amount"),
    ("huge amount", "json", {"type": "damage", "boss": "B", "seq": 1, "amount": 10**30}, "invalid_amount"),
    ("missing amount", "json", {"type": "damage", "boss": "B", "seq": 1}, "invalid_amount"),
    ("float seq", "json", {"type": "damage", "boss": "B", "seq": 1.0, "amount": 5}, "invalid"),
    ("seq gap", "json", {"type": "damage", "boss": "B", "seq": 3, "amount": 5}, "seq_gap"),
    (
        "stale epoch",
        "json",
        {"type": "damage", "boss": "B", "seq": 1, "amount": 5, "epoch": 0},
        "unknown_epoch",
    ),
    (
        "breakdown over amount",
        "json",
        {"type": "damage", "boss": "B", "seq": 1, "amount": 5, "breakdown": {"a": 6}},
        "invalid_amount",
    ),
    (
        "breakdown not a map",
        "json",
        {"type": "damage", "boss": "B", "seq": 1, "amount": 5, "breakdown": [1]},
        "invalid",
    ),
    ("negative pending", "json", {"type": "heartbeat", "boss": "B", "pending": -1}, "invalid"),
    (
        "inflight not a map",
        "json",
        {"type": "heartbeat", "boss": "B", "pending": 1, "inflight": 3},
        "malformed",
    ),
    ("attack without player", "json", {"type": "attack", "boss": "B"}, "unauthorized"),
]


async def test_every_bad_frame_gets_an_error_and_changes_nothing(live_boss):
    _, token = await sync_to_async(new_shard)("eu-4")
    _, token2 = await sync_to_async(new_shard)("eu-5")
    bad, _ = await server("eu-4", token)
    good, _ = await server("eu-5", token2)
    viewer = WebsocketCommunicator(application, f"/ws/bosses/{live_boss.slug}/")
    assert (await viewer.connect())[0]
    await recv(viewer), await recv(viewer)  # hello + snapshot
    before = await sync_to_async(ledger_figures)(live_boss)
    for name, kind, payload, code in BAD_FRAMES:
        if kind == "json":
            payload = json.dumps({k: (live_boss.slug if v == "B" else v) for k, v in payload.items()})
        await (bad.send_to(bytes_data=payload) if kind == "bytes" else bad.send_to(text_data=payload))
        err = await recv(bad)
        assert err["type"] == "error" and err["code"] == code, (name, err)
        assert err["detail"]
    assert await sync_to_async(ledger_figures)(live_boss) == before
    # the bad connection is still usable, and the other game server was never disturbed
    assert (await send(bad, type="damage", boss=live_boss.slug, seq=1, amount=5))["type"] == "ack"
    assert (await send(good, type="damage", boss=live_boss.slug, seq=1, amount=7))["type"] == "ack"
    # a 1 MiB frame: error frame, close 1009 (uvicorn's --ws-max-size refuses it first in production)
    await bad.send_to(
        text_data=json.dumps({"type": "damage", "boss": live_boss.slug, "pad": "x" * (1 << 20)})
    )
    await expect_close(bad, 1009, "too_large")
    out = await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
    assert out.applied == 12
    state = await recv(viewer)
    assert state["type"] == "state" and state["version"] == out.version
    assert (await send(good, type="damage", boss=live_boss.slug, seq=2, amount=1))["type"] == "ack"


async def test_too_many_bad_frames_close_with_4400(live_boss):
    _, token = await sync_to_async(new_shard)("eu-6")
    comm, _ = await server("eu-6", token)
    for _ in range(20):
        await comm.send_to(text_data="x")
    outs = [await comm.receive_output(timeout=3) for _ in range(21)]
    assert outs[-1] == {"type": "websocket.close", "code": 4400}


async def test_fenced_session_gets_fenced_errors_with_settlement(live_boss):
    _, token = await sync_to_async(new_shard)("eu-7")
    comm, epoch = await server("eu-7", token)
    await send(comm, type="damage", boss=live_boss.slug, seq=1, amount=10)
    await send(comm, type="heartbeat", boss=live_boss.slug, pending=40, inflight={"seq": 2, "amount": 5})
    await sync_to_async(session_fence)(boss=live_boss, shard_key="eu-7", epoch=epoch)
    before = await sync_to_async(ledger_figures)(live_boss)
    err = await send(comm, type="damage", boss=live_boss.slug, seq=2, amount=5)
    assert err["code"] == "fenced" and (err["last_seq"], err["policy"], err["settled"]) == (1, "fair", 45)
    hb = await send(comm, type="heartbeat", boss=live_boss.slug, pending=0)
    assert hb["code"] == "fenced"
    assert await sync_to_async(ledger_figures)(live_boss) == before


# --- platform-hosted players --------------------------------------------------------------


async def player(key: str, pid: str) -> WebsocketCommunicator:
    comm = await ws(f"/ws/shards/{key}/?player={pid}")
    welcome = await recv(comm)
    assert welcome == {
        "type": "welcome",
        "v": PROTOCOL_VERSION,
        "role": "player",
        "shard": key,
        "player": pid,
    }
    return comm


async def wait_for(predicate, timeout_s=5.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        value = await sync_to_async(predicate)()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_player_attacks_are_buffered_ticked_and_attributed(make_boss, gateways, simulator):
    from bosses.services import boss_go_live

    boss = await sync_to_async(make_boss)(min_damage=20, max_damage=30, attacks_per_second=50)
    await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(hosted_shard)("web-1")
    alice, bob = await player("web-1", "alice"), await player("web-1", "bob")
    dealt = {"alice": 0, "bob": 0}
    for i in range(10):
        for name, comm in (("alice", alice), ("bob", bob)):
            ack = await send(comm, type="attack", boss=boss.slug, id=i)
            assert ack["type"] == "attack_ack" and ack["id"] == i and 20 <= ack["damage"] <= 30
            dealt[name] += ack["damage"]
    total = sum(dealt.values())
    await wait_for(lambda: boss_ledger(boss_id=boss.pk).number("accepted") == total)
    waiting = {k: str(v) for k, v in dealt.items()}
    assert await sync_to_async(get_redis().hgetall)(keys.BossKeys(boss.pk).pbuf) == waiting
    await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    assert await sync_to_async(get_redis().hgetall)(keys.BossKeys(boss.pk).players) == waiting
    report = await sync_to_async(boss_verify)(boss=boss)
    assert report.ok, report.problems
    assert report.applied == total
    # the hosted shard heartbeats under its own session
    hb = await sync_to_async(get_redis().hkeys)(keys.BossKeys(boss.pk).hb)
    assert len(hb) == 1 and hb[0].startswith("web-1:")


async def test_player_rate_limit_then_close_on_abuse(make_boss, gateways, simulator):
    from bosses.services import boss_go_live

    boss = await sync_to_async(make_boss)(attacks_per_second=3)
    await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(hosted_shard)("web-2")
    comm = await player("web-2", "spammer")
    honest = await player("web-2", "honest")
    outs = []
    for i in range(6):
        outs.append(await send(comm, type="attack", boss=boss.slug, id=i))
    assert [o["type"] for o in outs[:3]] == ["attack_ack"] * 3
    assert all(o["code"] == "rate_limited" and o["retry_after_ms"] > 0 for o in outs[3:])
    # another player is not affected by the spammer
    assert (await send(honest, type="attack", boss=boss.slug))["type"] == "attack_ack"
    for _ in range(4):  # the 7th refusal within the second (more than 2 x 3) closes
        await comm.send_to(text_data=json.dumps({"type": "attack", "boss": boss.slug}))
    frames = []
    while True:
        out = await comm.receive_output(timeout=3)
        if out["type"] == "websocket.close":
            assert out["code"] == CloseCode.RATE_LIMITED
            break
        frames.append(json.loads(out["text"]))
    assert all(f["code"] == "rate_limited" for f in frames)
    dealt = sum(o["damage"] for o in outs[:3])
    await wait_for(lambda: boss_ledger(boss_id=boss.pk).number("accepted") >= dealt)
    contrib = await sync_to_async(get_redis().hget)(keys.BossKeys(boss.pk).pbuf, "spammer")
    assert int(contrib) == dealt  # refused attacks added nothing


async def test_player_attack_on_paused_boss_and_bad_player_id(live_boss, gateways, simulator):
    await sync_to_async(hosted_shard)("web-3")
    await sync_to_async(boss_pause)(boss=live_boss)
    comm = await player("web-3", "carol")
    err = await send(comm, type="attack", boss=live_boss.slug)
    assert err["code"] == "not_live" and err["status"] == "paused"
    err = await send(comm, type="damage", boss=live_boss.slug, seq=1, amount=5)
    assert err["code"] == "unauthorized"  # a player connection cannot push raw damage
    bad = await ws("/ws/shards/web-3/?player=" + "x" * 100)
    await expect_close(bad, 4400, "invalid")


async def test_hosted_shard_survives_being_fenced(make_boss, gateways, simulator):
    from bosses.models import BossEncounter
    from bosses.services import boss_go_live

    boss = await sync_to_async(make_boss)(min_damage=10, max_damage=10, attacks_per_second=100)
    await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(hosted_shard)("web-4")
    comm = await player("web-4", "dave")
    for _ in range(5):
        await send(comm, type="attack", boss=boss.slug)
    await wait_for(lambda: boss_ledger(boss_id=boss.pk).number("accepted") == 50)
    hosted = gateway.hosted_shard_get(shard_key="web-4")
    old_epoch = hosted.sessions[boss.pk].epoch
    fresh = await sync_to_async(BossEncounter.objects.get)(pk=boss.pk)
    await sync_to_async(session_fence)(boss=fresh, shard_key="web-4", epoch=old_epoch)
    for _ in range(5):
        await send(comm, type="attack", boss=boss.slug)
    await wait_for(lambda: boss_ledger(boss_id=boss.pk).number("accepted") == 100)
    assert hosted.sessions[boss.pk].epoch > old_epoch and hosted.sessions[boss.pk].fences == 1
    await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=boss)
    assert report.ok and report.applied == 100, report.problems


async def test_hosted_buffer_is_bounded_while_the_authority_is_away(
    make_boss, gateways, monkeypatch, simulator
):
    from bosses.services import boss_go_live

    monkeypatch.setattr(gateway, "GATEWAY_MAX_PENDING_DAMAGE", 25)
    boss = await sync_to_async(make_boss)(min_damage=10, max_damage=10, attacks_per_second=100)
    await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(hosted_shard)("web-5")
    comm = await player("web-5", "erin")
    assert (await send(comm, type="attack", boss=boss.slug))["damage"] == 10
    await wait_for(lambda: boss_ledger(boss_id=boss.pk).number("accepted") == 10)
    # Redis stops taking writes (scripts included) for 1.5 s: the hosted shard cannot deliver
    await sync_to_async(get_redis().execute_command)("CLIENT", "PAUSE", 1500, "WRITE")
    started = asyncio.get_running_loop().time()
    acks = [await send(comm, type="attack", boss=boss.slug) for _ in range(3)]
    assert [a["type"] for a in acks] == ["attack_ack", "attack_ack", "error"]
    assert acks[2]["code"] == "buffer_full" and acks[2]["pending"] == 20
    assert asyncio.get_running_loop().time() - started < 1.0  # refused at once, never blocked
    await wait_for(lambda: boss_ledger(boss_id=boss.pk).number("accepted") == 30, timeout_s=8)
    assert (await send(comm, type="attack", boss=boss.slug))["type"] == "attack_ack"  # room again


async def test_silent_unauthenticated_connection_is_closed(live_boss, monkeypatch):
    from transport.consumers import gateway as consumers

    monkeypatch.setattr(consumers, "AUTH_TIMEOUT_S", 0.2)
    await sync_to_async(new_shard)("eu-8")
    comm = await ws("/ws/shards/eu-8/")
    await expect_close(comm, CloseCode.UNAUTHORIZED, "unauthorized")


async def test_resume_continues_the_epoch_and_dedupes_across_connections(live_boss):
    _, token = await sync_to_async(new_shard)("eu-10")
    first, epoch = await server("eu-10", token)
    assert (await send(first, type="damage", boss=live_boss.slug, seq=1, amount=40))["duplicate"] is False
    await first.disconnect()  # the ack was "lost"; the client comes back and resumes
    again = await ws(f"/ws/shards/eu-10/?resume={epoch}", token)
    welcome = await recv(again)
    assert (welcome["epoch"], welcome["resumed"]) == (epoch, True)
    assert (await send(again, type="damage", boss=live_boss.slug, seq=1, amount=40))["duplicate"] is True
    assert (await send(again, type="damage", boss=live_boss.slug, seq=2, amount=2))["duplicate"] is False
    assert (await sync_to_async(boss_ledger)(boss_id=live_boss.pk)).number("accepted") == 42
    # an epoch never handed out is not resumed: a fresh one is opened
    other = await ws("/ws/shards/eu-10/?resume=999", token)
    welcome = await recv(other)
    assert welcome["resumed"] is False and welcome["epoch"] == epoch + 1
    bad = await ws("/ws/shards/eu-10/")
    await bad.send_to(text_data=json.dumps({"type": "auth", "token": token, "resume": "12"}))
    await expect_close(bad, 4400, "invalid")
