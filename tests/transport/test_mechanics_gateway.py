"""A fight with a damage-taken multiplier through the real gateway: a live uvicorn, a game
server on /ws/shards/ with its shard token, a client on /ws/bosses/ (docs/liveops.md,
"Mechanics"). The state frames carry the phase's multiplier, the books split each tick as the
docs say, and ``verify_boss`` holds, also on the archived log."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from bosses.models import BossEncounter
from bosses.services import boss_go_live, boss_tick, event_log_archive
from bosses.verification import boss_verify
from shards.services import shard_create
from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


@pytest.fixture
def gateway_url():
    proc, port = processes.start_server()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        proc.stop()


async def _state(ws, version: int) -> dict:
    """The first ``state`` frame at ``version`` or later (other frames are skipped)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "state" and frame["version"] >= version:
            return frame


async def test_a_phase_that_takes_half_damage_over_the_gateway(gateway_url):
    from asgiref.sync import sync_to_async

    def setup():
        boss = BossEncounter.objects.create(
            name="Warden", slug="warden", max_hp=10_000, phases="80:Shelled takes 50%, 30:Cracked takes 12.5%"
        )
        boss_go_live(boss=boss)
        _, token = shard_create(key="gw-mech", name="GW")
        return boss, token

    boss, token = await sync_to_async(setup)()
    tick = sync_to_async(lambda: boss_tick(boss_id=boss.pk, force=True))
    async with (
        connect(f"{gateway_url}/ws/bosses/warden/") as watcher,
        connect(
            f"{gateway_url}/ws/shards/gw-mech/", additional_headers={"Authorization": f"Bearer {token}"}
        ) as game,
    ):
        welcome = json.loads(await game.recv())
        assert welcome["type"] == "welcome" and welcome["role"] == "server"
        snapshot = await _state(watcher, 1)
        assert snapshot["damage_taken_bp"] == 10_000  # the opening phase takes full damage
        expected = [
            # (amount, applied, mitigated, hp after, multiplier of the phase after)
            (2_500, 2_500, 0, 7_500, 5_000),  # opening: full damage; enters Shelled
            (3_001, 1_500, 1_501, 6_000, 5_000),  # Shelled: floor(3001 / 2)
            (7_000, 3_500, 3_500, 2_500, 1_250),  # Shelled again; enters Cracked
            (30_000, 2_500, 26_250, 0, 1_250),  # Cracked: 3750 counted, 1250 of it overkill
        ]
        for seq, (amount, applied, mitigated, hp, bp) in enumerate(expected, start=1):
            await game.send(json.dumps({"type": "damage", "boss": "warden", "seq": seq, "amount": amount}))
            ack = json.loads(await game.recv())
            assert ack == {"type": "ack", "boss": "warden", "seq": seq, "duplicate": False}
            out = await tick()
            assert (out.applied, out.mitigated, out.hp, out.damage_taken_bp) == (applied, mitigated, hp, bp)
            frame = await _state(watcher, out.version)
            assert (frame["hp"], frame["damage_taken_bp"]) == (hp, bp)
        assert out.overkill == 1_250 and out.defeated

    def books():
        fresh = BossEncounter.objects.get(pk=boss.pk)
        report = boss_verify(boss=fresh)
        assert report.ok, report.problems
        assert (report.accepted, report.applied, report.mitigated, report.overkill) == (
            42_501,
            10_000,
            31_251,
            1_250,
        )
        event_log_archive(boss=fresh)
        assert boss_verify(boss=fresh).ok

    await sync_to_async(books)()


async def test_a_regenerating_phase_heals_between_hits_over_the_gateway(gateway_url):
    """The boss heals while nobody hits it: it stays marked for the tick, each tick's frame
    shows the healed HP, and the killing blow is applied against it."""
    from asgiref.sync import sync_to_async

    def setup():
        boss = BossEncounter.objects.create(
            name="Hydra", slug="hydra", max_hp=100_000, phases="90:Mending regen 20000/s"
        )
        boss_go_live(boss=boss)
        _, token = shard_create(key="gw-regen", name="GW")
        return boss, token

    boss, token = await sync_to_async(setup)()
    tick = sync_to_async(lambda: boss_tick(boss_id=boss.pk, force=True))
    async with (
        connect(f"{gateway_url}/ws/bosses/hydra/") as watcher,
        connect(
            f"{gateway_url}/ws/shards/gw-regen/", additional_headers={"Authorization": f"Bearer {token}"}
        ) as game,
    ):
        assert json.loads(await game.recv())["type"] == "welcome"
        assert (await _state(watcher, 1))["regen_per_s"] == 0  # the opening phase does not heal
        await game.send(json.dumps({"type": "damage", "boss": "hydra", "seq": 1, "amount": 50_000}))
        assert json.loads(await game.recv())["seq"] == 1
        out = await tick()
        assert (out.hp, out.healed, out.regen_per_s) == (50_000, 0, 20_000)  # enters Mending
        frame = await _state(watcher, out.version)
        assert (frame["hp"], frame["regen_per_s"]) == (50_000, 20_000)

        # No damage now: the boss is still ticked, and heals (20 HP per ms).
        def healing_tick():
            o = boss_tick(boss_id=boss.pk, force=True)
            return o if o.code == "applied" else None

        out = await sync_to_async(lambda: wait_until(healing_tick, what="a tick that heals"))()
        assert out.healed > 0 and out.hp == 50_000 + out.healed and out.applied == 0
        healed_frame = await _state(watcher, out.version)
        assert healed_frame["hp"] == out.hp
        await game.send(json.dumps({"type": "damage", "boss": "hydra", "seq": 2, "amount": 200_000}))
        assert json.loads(await game.recv())["seq"] == 2
        final = await tick()
        assert final.defeated and final.hp == 0
        assert final.applied == out.hp + final.healed and final.overkill == 200_000 - final.applied

    def books():
        fresh = BossEncounter.objects.get(pk=boss.pk)
        report = boss_verify(boss=fresh)
        assert report.ok, report.problems
        assert report.hp == 0 == report.max_hp - report.applied + report.healed
        assert report.healed >= out.healed and report.accepted == 250_000
        event_log_archive(boss=fresh)
        assert boss_verify(boss=fresh).ok

    await sync_to_async(books)()
