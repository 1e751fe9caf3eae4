"""A game backend's first hour, end to end, with every part real: a live uvicorn, a tick
worker, the beat, a webhook worker, a webhook receiver, players on WebSockets.

The backend makes a boss over the API, signs its players' tickets with the SDK's signer,
the players fight on a hosted shard until the boss dies, the backend receives the signed
webhooks (verified with the SDK's verifier), reads the grants the designed reward table
gave, and claims each exactly once, retries included (docs/integration.md).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.api.conftest import Api
from tests.support import processes
from tests.webhooks.conftest import WORKER_ENV, make_endpoint, receiver  # noqa: F401 (fixtures)
from worldboss_sdk import player_ticket_sign, webhook_verify

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

SECRET = "integration-test-ticket-secret-0123456789"
PLAYERS = ("alice", "bob", "carol")


@pytest.fixture
def stack():
    server, port = processes.start_server(PLAYER_TICKET_KEYS=f"game:{SECRET}")
    procs = [
        server,
        processes.start_worker(queues="ticks,sagas", concurrency=4),
        processes.start_worker(queues="webhooks", concurrency=4, **WORKER_ENV),
        processes.start_beat(),
    ]
    try:
        yield port
    finally:
        for proc in reversed(procs):
            proc.stop()


def _until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _fight(port: int, slug: str, shard: str) -> dict[str, int]:
    """Each player attacks (within the boss's rate) until the boss is defeated."""
    acked = dict.fromkeys(PLAYERS, 0)

    async def player(name: str) -> None:
        ticket = player_ticket_sign(secret=SECRET, key_id="game", player=name, ttl_s=600, shard=shard)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/shards/{shard}/?ticket={ticket}") as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["role"] == "player" and welcome["player"] == name, welcome
            for n in range(10_000):
                await ws.send(json.dumps({"type": "attack", "boss": slug, "id": n}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if reply["type"] == "attack_ack":
                    acked[name] += reply["damage"]
                elif reply.get("code") == "not_live":
                    return  # defeated
                else:
                    assert reply.get("code") == "rate_limited", reply
                await asyncio.sleep(0.06)

    await asyncio.wait_for(asyncio.gather(*(player(p) for p in PLAYERS)), 120)
    return acked


def test_a_game_backend_runs_a_fight_and_claims_its_rewards(stack, receiver, make_endpoint):  # noqa: F811
    from api.services import apikey_create
    from bosses.models import RewardTable, RewardTier
    from shards.services import shard_create

    api = Api(f"http://127.0.0.1:{stack}")
    key = apikey_create(name="studio backend", scopes=("read", "operate", "rewards"))[1]
    endpoint = make_endpoint()
    shard_create(key="arena", name="Arena", kind="hosted")
    table = RewardTable.objects.create(name="raid", last_hit_payload={"title": "Giantslayer"})
    RewardTier.objects.create(
        table=table, position=0, name="mvp", kind="rank", rank_from=1, rank_to=1, payload={"gold": 500}
    )
    RewardTier.objects.create(
        table=table, position=1, name="raider", kind="damage", damage_min=1, payload={"gold": 50}
    )

    made = api.post(
        "/bosses",
        key=key,
        body={
            "name": "Frost Giant",
            "slug": "frost-giant",
            "max_hp": 6_000,
            "min_damage": 80,
            "max_damage": 120,
            "attacks_per_second": 20,
            "tick_interval_ms": 100,
        },
    )
    assert made.status == 201, made.body
    from bosses.models import BossEncounter

    BossEncounter.objects.filter(slug="frost-giant").update(reward_table=table)
    assert api.post("/bosses/frost-giant/go-live", key=key).status == 200

    acked = asyncio.run(_fight(stack, "frost-giant", "arena"))
    assert sum(acked.values()) >= 6_000

    # the webhooks: each signed, each event once per occurrence
    def hooks():
        events = receiver.events()
        return events if {"boss.went_live", "boss.defeated", "rewards.granted"} <= set(events) else None

    _until(hooks, 60, "the defeated and rewards webhooks")
    for request in receiver.requests:
        body = webhook_verify(
            secret=endpoint.secret,
            body=request.body,
            timestamp=request.headers["Webhook-Timestamp"],
            signature=request.headers["Webhook-Signature"],
        )
        assert body["boss"]["slug"] == "frost-giant" and body["event"] == request.event
        assert body["id"] == request.id
    assert len({r.id for r in receiver.requests}) == receiver.count()  # nothing sent twice
    assert receiver.events().count("boss.defeated") == 1

    # results and the leaderboard over the API
    results = api.get("/bosses/frost-giant/fights/1/results", key=key).body
    assert results["status"] == "defeated" and results["hp"] == 0
    board = api.get("/bosses/frost-giant/fights/1/leaderboard", key=key).body
    ranked = {row["player"]: row["damage"] for row in board["items"]}
    assert set(ranked) == set(PLAYERS)
    # every player is credited with what the authority took of their acked hits: all of it,
    # except hits still in the gateway's buffer when the boss died (refused: it is dead)
    assert all(0 < ranked[p] <= acked[p] for p in PLAYERS), (ranked, acked)
    totals = results["totals"]
    assert results["final"] is True and totals["applied"] == 6_000
    assert sum(ranked.values()) == totals["player_damage"] == totals["accepted"] == 6_000 + totals["overkill"]

    # the grants the table gave: the top player mvp, everyone raider... first match wins
    feed = api.get("/rewards?boss=frost-giant", key=key).body
    grants = feed["items"]
    tiers = sorted((g["player"], g["tier"]) for g in grants)
    top = min(PLAYERS, key=lambda p: (-ranked[p], p))  # most damage, ties by name
    expected = {(p, "mvp" if p == top else "raider") for p in PLAYERS}
    assert expected <= set(tiers)
    last_hit = [g for g in grants if g["tier"] == "last_hit"]
    assert len(last_hit) == 1 and last_hit[0]["payload"] == {"title": "Giantslayer"}
    assert {g["tier"]: g["payload"] for g in grants if g["tier"] != "last_hit"} == {
        "mvp": {"gold": 500},
        "raider": {"gold": 50},
    }

    # claims: once each, a retry gets the same answer, another claim id is refused
    for grant in grants:
        first = api.post(f"/rewards/{grant['id']}/claim", key=key, body={"claim_id": f"c-{grant['id']}"})
        retry = api.post(f"/rewards/{grant['id']}/claim", key=key, body={"claim_id": f"c-{grant['id']}"})
        assert first.status == retry.status == 200 and first.body == retry.body
        other = api.post(f"/rewards/{grant['id']}/claim", key=key, body={"claim_id": "someone-else"})
        assert (other.status, other.code) == (409, "already_claimed")
    assert api.get(f"/rewards?boss=frost-giant&after={feed['next']}", key=key).body["items"] == []
