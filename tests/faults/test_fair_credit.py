"""A game server killed with kill -9 while holding attributed damage under a fair boss: the
crash saga credits that damage to its players, and the victory saga rewards them for it.

Real processes: uvicorn serving /ws/shards/, a Celery worker and beat (sync tick, crash scan
every 200 ms, archive, victory saga), the SDK game server as its own process
(tests/faults/sdk_proc.py, mode ``hold``: alice's 300 flushed, then bob's 450 held while the
boss is paused, reported by heartbeats with their breakdown).
"""

from __future__ import annotations

import json
import signal

import pytest

from bosses.models import BossEvent, Contribution, ContributionKind, SagaRun, SagaStatus
from bosses.services import boss_go_live, boss_pause, boss_resume
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_create
from tests.faults.conftest import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault]

# alice's flushed 300 plus bob's held 450 kill it exactly: only the recovered damage can.
MAX_HP = 750


def completed(boss, kind: str, **fields) -> SagaRun | None:
    return SagaRun.objects.filter(boss=boss, kind=kind, status=SagaStatus.COMPLETED, **fields).first()


def contributions(boss, kind: str) -> dict[str, int]:
    return {c.name: c.damage for c in Contribution.objects.filter(boss=boss, kind=kind)}


def test_killed_sdk_holding_attributed_damage_gets_its_players_rewarded(platform, sdk_procs, make_boss):
    boss = make_boss(
        max_hp=MAX_HP, crash_policy="fair", heartbeat_interval_ms=100, heartbeat_timeout_ms=1_000
    )
    boss_go_live(boss=boss)
    shard, token = shard_create(key="sdk-fair-credit", name="SDK game server")
    proc = sdk_procs(platform, shard.key, token, boss.slug, "hold")
    assert proc.wait_line("FLUSHED")["acked"] == 300
    boss_pause(boss=boss)  # deltas are refused now; heartbeats still report what it holds
    proc.signal(signal.SIGUSR1)
    holding = proc.wait_line("HOLDING")
    assert holding["unacked"] == 450
    sess = keys.session_id(shard.key, holding["epoch"])
    k = keys.BossKeys(boss.pk)
    assert int(get_redis().hget(k.held, sess)) == 450
    assert json.loads(get_redis().hget(k.heldby, sess)) == ["bob", 450]  # who holds it
    proc.kill9()

    saga = wait_until(
        lambda: completed(boss, "crash", shard_key=shard.key, epoch=holding["epoch"]), what="the crash saga"
    )
    assert (saga.policy, saga.amount) == ("fair", 450)
    assert saga.detail["credited"] == {"players": 1, "amount": 450}
    boss_resume(boss=boss)  # the next tick applies the recovered damage: the boss dies

    wait_until(lambda: completed(boss, "victory"), what="the victory saga", timeout_s=60)
    assert contributions(boss, ContributionKind.PLAYER) == {"alice": 300, "bob": 450}
    assert contributions(boss, ContributionKind.SHARD) == {shard.key: 750}
    archived: dict[str, int] = {}
    for event in BossEvent.objects.filter(boss=boss, fight=boss.fight):
        for player, dmg in (event.players or {}).items():
            archived[player] = archived.get(player, 0) + int(dmg)
    assert archived == {"alice": 300, "bob": 450}  # a restore from the archive sees it too
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.hp == 0 and report.recovered == 450
