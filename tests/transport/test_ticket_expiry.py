"""A ticket vouches for its player until its ``exp`` on an open socket too (docs/security.md,
"Tickets"): at ``exp`` the gateway sends ``ticket_expired`` and closes 4401 with the reason
``ticket_expired``; what was acknowledged before stays credited. A live uvicorn, real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from websockets.asyncio.client import connect

from core import keys
from core.redis import get_redis
from shards.services import shard_create
from tests.support import processes
from tests.support.waiting import wait_until
from worldboss_sdk import player_ticket_sign
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90), pytest.mark.process]

SECRET = "an-example-ticket-secret-of-32-bytes-or-more"
TTL_S = 4


def test_an_open_socket_is_closed_when_its_ticket_expires(live_boss):
    shard_create(key="exp-tk", name="EXP", kind="hosted")
    server, port = processes.start_server(PLAYER_TICKET_KEYS=f"game:{SECRET}")
    base = f"ws://127.0.0.1:{port}/ws/shards/exp-tk/"
    ticket = player_ticket_sign(secret=SECRET, key_id="game", player="hero-exp", ttl_s=TTL_S)
    expires_s = json.loads(base64.urlsafe_b64decode(ticket.split(".")[2] + "=="))["exp"]

    async def run() -> tuple[dict, dict, dict, int | None, str]:
        async with connect(f"{base}?ticket={ticket}") as ws:
            welcome = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "attack", "boss": live_boss.slug, "id": 1}))
            ack = json.loads(await ws.recv())
            # nothing more is sent: the server closes the socket at exp by itself
            refusal = json.loads(await asyncio.wait_for(ws.recv(), timeout=TTL_S + 30))
            closed_at = time.time()
            await ws.wait_closed()
            assert closed_at >= expires_s  # not before exp (the server's clock is this one)
            return welcome, ack, refusal, ws.close_code, ws.close_reason

    try:
        welcome, ack, refusal, code, reason = asyncio.run(run())
        assert welcome["player"] == "hero-exp" and ack["type"] == "attack_ack"
        assert (refusal["type"], refusal["code"], refusal["close"]) == ("error", "ticket_expired", 4401)
        assert "fresh" in refusal["detail"]
        assert (code, reason) == (CloseCode.UNAUTHORIZED, "ticket_expired")
        # what was acknowledged before exp is credited (the gateway flushed it)
        pbuf = keys.BossKeys(live_boss.pk)
        wait_until(
            lambda: (
                (get_redis().hget(pbuf.pbuf, "hero-exp") or get_redis().hget(pbuf.players, "hero-exp"))
                == str(ack["damage"])
            ),
            timeout_s=15,
            what="the acked attack credited",
        )

        async def again() -> tuple[dict, int | None]:
            async with connect(f"{base}?ticket={ticket}") as ws:  # the same ticket, now expired
                frame = json.loads(await ws.recv())
                await ws.wait_closed()
                return frame, ws.close_code

        frame, code = asyncio.run(again())
        assert (frame["code"], code) == ("ticket_expired", CloseCode.UNAUTHORIZED)
    finally:
        server.stop()
