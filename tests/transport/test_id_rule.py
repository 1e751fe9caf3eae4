"""One strict rule for every id that reaches a Redis script (docs/security.md, "Ids").

A trailing newline passed the old ``$``-anchored pattern and made the tick's log entry
invalid JSON; platform ids (``user:``, ``guest:``, ``sim:``) passed a game server's
breakdown and got reward grants. Each is refused with a clear error and changes nothing,
through a live uvicorn (simulator mode and tickets on) and real Redis.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect

from bosses.selectors import boss_ledger
from bosses.services import boss_tick
from core import keys
from core.errors import InvalidInput, TicketInvalid
from core.redis import get_redis
from core.tickets import player_ticket_verify
from core.validation import breakdown_map, held_breakdown_map, player_id, player_id_problem
from shards.services import shard_create
from tests.support import processes
from worldboss_sdk import ShardClient, player_ticket_sign
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

SECRET = "an-example-ticket-secret-of-32-bytes-or-more"
BAD_IDS = ["nl\n", "user:1", "guest:AAAAAAAAAAAAAAAAAAAAAA", "sim:bot", "tab\tx", "x" * 65, ""]


# --- the rule itself --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [*BAD_IDS, "nl\r", "nul\x00", "\nlead", "é", 7])
def test_the_rule_refuses_control_characters_platform_ids_and_overlong_ids(bad):
    assert player_id_problem(bad) is not None
    with pytest.raises(InvalidInput):
        player_id(bad)
    with pytest.raises(InvalidInput, match="breakdown"):
        breakdown_map({bad: 1}, amount=5)
    with pytest.raises(InvalidInput, match="breakdown"):
        held_breakdown_map({bad: 1}, held=5)
    with pytest.raises(ValueError):
        ShardClient("ws://127.0.0.1:1", shard="eu-1", token="token").hit("boss", 1, player=bad)


def test_platform_ids_pass_only_where_the_platform_names_them():
    assert player_id("user:1", platform_ids=True) == "user:1"
    assert breakdown_map({"guest:abc": 2, "alice": 3}, amount=5, platform_ids=True) == {
        "guest:abc": 2,
        "alice": 3,
    }
    assert player_id_problem("nl\n", platform_ids=True) is not None  # never a control character
    assert player_id("a.b:c@d_e-1") == "a.b:c@d_e-1"


@pytest.mark.parametrize("sub", ["tp-nl\n", "tp\r", "user:1"])
def test_a_signed_ticket_naming_a_bad_id_is_refused(sub):
    ticket = player_ticket_sign(secret=SECRET, key_id="game", player=sub)
    with pytest.raises(TicketInvalid, match=r"sub|platform id"):
        player_ticket_verify(ticket=ticket, keys={"game": SECRET.encode()}, now_s=time.time())


def test_a_shard_key_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidInput):
        shard_create(key="eu-nl\n", name="x")


# --- through a live server --------------------------------------------------------------------


@pytest.fixture
def server():
    proc, port = processes.start_server(**processes.SIMULATOR_ENV, PLAYER_TICKET_KEYS=f"game:{SECRET}")
    yield port
    proc.stop()


def _figures(boss_id: int):
    ledger = boss_ledger(boss_id=boss_id)
    pbuf = get_redis().hgetall(keys.BossKeys(boss_id).pbuf)
    return ledger.number("accepted"), ledger.buffers, pbuf, get_redis().hgetall(keys.BossKeys(boss_id).heldby)


@pytest.mark.process
def test_a_game_servers_breakdown_with_a_newline_or_platform_id_is_refused_and_changes_nothing(
    live_boss, server
):
    _, token = shard_create(key="gs-ids", name="GS")
    before = _figures(live_boss.pk)
    url = f"ws://127.0.0.1:{server}/ws/shards/gs-ids/"

    async def run() -> list[dict]:
        out = []
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            for bad in BAD_IDS:
                for frame in (
                    {
                        "type": "damage",
                        "boss": live_boss.slug,
                        "seq": 1,
                        "amount": 100,
                        "breakdown": {bad: 60},
                    },
                    {"type": "heartbeat", "boss": live_boss.slug, "pending": 100, "breakdown": {bad: 60}},
                ):
                    await ws.send(json.dumps(frame))
                    out.append(json.loads(await ws.recv()))
            # the socket still works: a valid delta is acked
            await ws.send(
                json.dumps(
                    {
                        "type": "damage",
                        "boss": live_boss.slug,
                        "seq": 1,
                        "amount": 100,
                        "breakdown": {"ok": 60},
                    }
                )
            )
            out.append(json.loads(await ws.recv()))
        return out

    *refusals, ack = asyncio.run(run())
    for frame in refusals:
        assert (frame["type"], frame["code"]) == ("error", "invalid"), frame
        assert "player id" in frame["detail"], frame
    assert "platform id" in refusals[2]["detail"] and "\\n" in refusals[0]["detail"]
    assert (ack["type"], ack["seq"]) == ("ack", 1)
    after = _figures(live_boss.pk)
    assert after[0] == before[0] + 100 and after[2] == {"ok": "60"}
    out = boss_tick(boss_id=live_boss.pk, force=True)
    assert out.applied == 100
    (_, entry), *_ = get_redis().xrevrange(keys.BossKeys(live_boss.pk).log, count=1)
    assert json.loads(entry["p"]) == {"ok": 60}


@pytest.mark.process
def test_a_ticket_with_a_newline_and_simulated_platform_ids_are_refused(live_boss, server):
    shard_create(key="ho-ids", name="HO", kind="hosted")
    base = f"ws://127.0.0.1:{server}/ws/shards/ho-ids/"
    ticket = player_ticket_sign(secret=SECRET, key_id="game", player="tp-nl\n")
    paths = [f"?ticket={ticket}"] + [
        f"?player={quote(p)}" for p in ("user:1", "guest:AAAAAAAAAAAAAAAAAAAAAA", "sim:bot", "nl\n")
    ]

    async def run() -> list[tuple[dict, int | None]]:
        out = []
        for path in paths:
            async with connect(base + path) as ws:
                frame = json.loads(await ws.recv())
                await ws.wait_closed()
                out.append((frame, ws.close_code))
        async with connect(base + "?player=sim-ok") as ws:  # a simulated player still plays
            out.append((json.loads(await ws.recv()), None))
        return out

    (ticket_refusal, ticket_close), *players, (welcome, _) = asyncio.run(run())
    assert (ticket_refusal["code"], ticket_close) == ("ticket_invalid", CloseCode.UNAUTHORIZED)
    assert "'sub'" in ticket_refusal["detail"]
    for frame, close in players:
        assert (frame["code"], close) == ("invalid", CloseCode.MALFORMED), frame
    assert all("platform id" in f["detail"] for f, _ in players[:3])
    assert welcome["type"] == "welcome" and welcome["player"] == "sim-ok"
    assert get_redis().hgetall(keys.BossKeys(live_boss.pk).pbuf) == {}


def test_the_demo_without_simulation_leaves_simulator_mode_off():
    from tools.demo import DemoOptions, demo_simulator_env

    env = {"LIVEOPS_SIMULATOR_PLAYERS": "1"}  # even when the demo's own environment has it
    demo_simulator_env(env, DemoOptions(sim=False))
    assert "LIVEOPS_SIMULATOR_PLAYERS" not in env
    demo_simulator_env(env, DemoOptions(sim=True))
    assert env["LIVEOPS_SIMULATOR_PLAYERS"] == "1"
