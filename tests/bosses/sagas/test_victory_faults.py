"""The victory saga killed at every step (a real process dying with status 137) and re-run."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bosses.models import RewardGrant, RewardTable, RewardTier, SagaRun, SagaStatus
from bosses.sagas.victory import VICTORY_STEPS, boss_victory_run, steps_done
from bosses.services import boss_go_live, boss_tick
from core import keys
from core.redis import get_redis
from tests.support import processes
from tests.support.authority import delta_ingest

pytestmark = [pytest.mark.process, pytest.mark.fault]

PLAYERS = 13
RUN_SAGA = (
    "import django; django.setup(); import sys; from bosses.sagas.victory import boss_victory_run; "
    "boss_victory_run(boss_id=int(sys.argv[1]), fight=int(sys.argv[2]))"
)


def designed_table() -> RewardTable:
    """Three tiers and a last-hit bonus: each kill must end with PLAYERS + 1 grants, once."""
    table = RewardTable.objects.create(
        name=f"t{RewardTable.objects.count()}", last_hit_payload={"title": "Slayer"}
    )
    RewardTier.objects.create(table=table, position=0, name="top", kind="rank", rank_from=1, rank_to=3)
    RewardTier.objects.create(table=table, position=1, name="half", kind="percentile", percent=50)
    RewardTier.objects.create(table=table, position=2, name="rest", kind="damage", damage_min=1)
    return table


# All players deal 90 in the one defeating tick: ranks and the last hit go by name.
EXPECTED_GRANTS = sorted(
    [
        (f"player-{j}", t)
        for j, t in zip(sorted(range(PLAYERS), key=str), ["top"] * 3 + ["half"] * 4 + ["rest"] * 6)
    ]
    + [("player-0", "last_hit")]
)


def defeated_boss(make_boss, make_session, *, table: RewardTable | None = None):
    boss = make_boss(max_hp=1_000, reward_table=table)
    boss_go_live(boss=boss)
    s = make_session()
    for seq in range(1, 4):
        delta_ingest(
            boss_id=boss.pk,
            shard_key=s.shard_key,
            epoch=s.epoch,
            seq=seq,
            amount=PLAYERS * 30,
            breakdown={f"player-{j}": 30 for j in range(PLAYERS)},
        )
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    return boss


def run_saga_process(boss, failpoint: str = "") -> subprocess.CompletedProcess:
    env = processes.subprocess_env(LIVEOPS_FAILPOINTS=failpoint)
    return subprocess.run(
        [sys.executable, "-c", RUN_SAGA, str(boss.pk), str(boss.fight)],
        env=env,
        cwd=processes.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


FAILPOINTS = [f"victory.{step}.{where}" for step in VICTORY_STEPS for where in ("before", "inside")]


def test_saga_killed_at_every_step_then_rerun_grants_every_reward_once(
    transactional_db, make_boss, make_session
):
    pubsub = get_redis().pubsub()
    for point in FAILPOINTS:
        boss = defeated_boss(make_boss, make_session, table=designed_table())
        pubsub.subscribe(keys.state_channel(boss.pk))
        step, where = point.split(".")[1:]
        killed = run_saga_process(boss, point)
        assert killed.returncode == 137, (point, killed.stderr[-2000:])
        saga = SagaRun.objects.get(boss=boss, kind="victory")
        # Exactly the steps before the failpoint are recorded: an unfinished step left nothing.
        done_before = list(VICTORY_STEPS[: VICTORY_STEPS.index(step)])
        assert steps_done(saga) == done_before, point
        assert saga.status == SagaStatus.RUNNING
        granted = RewardGrant.objects.filter(boss=boss).count()
        assert granted == (len(EXPECTED_GRANTS) if "rewards" in done_before else 0), point

        boss_victory_run(boss_id=boss.pk, fight=boss.fight)  # the re-run (a retry, the sweep)
        saga.refresh_from_db()
        assert saga.status == SagaStatus.COMPLETED and steps_done(saga) == list(VICTORY_STEPS), point
        assert saga.attempts == 2
        rewards = list(RewardGrant.objects.filter(boss=boss).values_list("player", "tier"))
        assert sorted(rewards) == EXPECTED_GRANTS, point
        boss.refresh_from_db()
        assert boss.status == "defeated" and boss.final_hp == 0

        # The broadcast: once, or twice with the same version when the process died between
        # the PUBLISH and its record (clients drop a version they already show).
        deadline, defeated = time.monotonic() + 0.3, []  # published before the run returned
        while time.monotonic() < deadline:
            m = pubsub.get_message(timeout=0.05)
            if m and m["type"] == "message" and json.loads(m["data"])["type"] == "defeated":
                defeated.append(json.loads(m["data"]))
        expected = 2 if point == "victory.announce.inside" else 1
        assert len(defeated) == expected, point
        assert {d["version"] for d in defeated} == {boss.final_version}
        pubsub.unsubscribe()


def test_worker_killed_mid_saga_is_resumed_by_the_sweep(transactional_db, make_boss, make_session):
    boss = defeated_boss(make_boss, make_session)
    beat = processes.start_beat(SAGA_RESUME_INTERVAL_MS="300")
    try:
        doomed = processes.start_worker(queues="sagas", LIVEOPS_FAILPOINTS="victory.rewards.inside")
        from bosses.services import victory_enqueue

        victory_enqueue(boss_id=boss.pk)
        doomed.popen.wait(timeout=30)
        assert doomed.popen.returncode == 137  # the whole worker died inside the rewards step
        saga = SagaRun.objects.get(boss=boss, kind="victory")
        assert steps_done(saga) == ["freeze", "persist_final_state", "contributions", "leaderboard"]
        assert RewardGrant.objects.filter(boss=boss).count() == 0
        # Its task stays unacknowledged on the broker (acks_late); the sweep re-enqueues it.
        worker = processes.start_worker(queues="sagas", SAGA_STALE_MS="500")
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                saga.refresh_from_db()
                if saga.status == SagaStatus.COMPLETED:
                    break
                time.sleep(0.1)
            assert saga.status == SagaStatus.COMPLETED, worker.output()[-3000:]
            time.sleep(1.0)  # further sweeps find it completed and enqueue nothing
            assert RewardGrant.objects.filter(boss=boss).count() == PLAYERS
            assert steps_done(saga) == list(VICTORY_STEPS)
        finally:
            worker.stop()
    finally:
        beat.stop()
    # Only the saga's own functions (no manual re-run here): the sweep did the resume.
    assert boss_victory_run(boss_id=boss.pk, fight=boss.fight).attempts == saga.attempts
