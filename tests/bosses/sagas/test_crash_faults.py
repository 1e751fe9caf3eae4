"""The crash saga killed at every failpoint (a real process dying with status 137), then resumed.

The kill leaves exactly the steps before the failpoint recorded; the crash scan resumes the
saga (the clock is advanced, not slept through) and the session is settled exactly once.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bosses.models import SagaRun, SagaStatus
from bosses.sagas.crash import CRASH_SAGA_RESUME_AFTER_MS, CRASH_STEPS, crashed_sessions_scan
from bosses.sagas.runner import saga_failpoints, steps_done
from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core.clock import ManualClock, RedisClock
from core.errors import Fenced
from core.redis import get_redis
from shards.models import Shard, ShardStatus
from tests.support import processes
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = [pytest.mark.process, pytest.mark.fault]

TIMEOUT_MS = 300
PENDING, INFLIGHT = 40, 25  # what the shard holds: its buffer and a delta that never arrived
RUN_SAGA = (
    "import django; django.setup(); import sys; from bosses.models import BossEncounter; "
    "from bosses.sagas.crash import session_fence; "
    "session_fence(boss=BossEncounter.objects.get(pk=int(sys.argv[1])), shard_key=sys.argv[2], "
    "epoch=int(sys.argv[3]), silent_ms=int(sys.argv[4]))"
)
FAILPOINTS = saga_failpoints(kind="crash", steps=CRASH_STEPS)


def test_every_step_of_the_crash_saga_has_two_failpoints():
    assert FAILPOINTS == [
        "crash.fence.before",
        "crash.fence.inside",
        "crash.settle.before",
        "crash.settle.inside",
        "crash.mark_shard.before",
        "crash.mark_shard.inside",
    ]


def holding_session(make_boss, make_session, policy: str):
    """A live boss and a session that had 30 accepted and now holds PENDING + INFLIGHT."""
    boss = make_boss(crash_policy=policy, heartbeat_interval_ms=100, heartbeat_timeout_ms=TIMEOUT_MS)
    boss_go_live(boss=boss)
    s = make_session()
    args = dict(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch)
    delta_ingest(**args, seq=1, amount=30)
    assert heartbeat_record(**args, pending=PENDING, inflight_seq=2, inflight_amount=INFLIGHT).held == (
        PENDING + INFLIGHT
    )
    return boss, s


def run_saga_process(boss, s, failpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_SAGA, str(boss.pk), s.shard_key, str(s.epoch), str(TIMEOUT_MS + 1)],
        env=processes.subprocess_env(LIVEOPS_FAILPOINTS=failpoint),
        cwd=processes.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def scan_until_settled(saga: SagaRun) -> ManualClock:
    """Scan every 500 ms of the scanner's clock (never a real sleep) until the saga completes."""
    clock = ManualClock(RedisClock(get_redis()).now_ms())
    for _ in range(2 * CRASH_SAGA_RESUME_AFTER_MS // 500 + 2):
        crashed_sessions_scan(clock=clock)
        saga.refresh_from_db()
        if saga.status != SagaStatus.RUNNING:
            break
        clock.advance(500)
    return clock


@pytest.mark.parametrize("policy", ["fair", "harsh"])
def test_crash_saga_killed_at_every_failpoint_then_resumed_settles_exactly_once(
    transactional_db, make_boss, make_session, policy
):
    held = PENDING + INFLIGHT
    for point in FAILPOINTS:
        boss, s = holding_session(make_boss, make_session, policy)
        step = point.split(".")[1]
        killed = run_saga_process(boss, s, point)
        assert killed.returncode == 137, (point, killed.stderr[-2000:])

        saga = SagaRun.objects.get(boss=boss, kind="crash")
        # Exactly the steps before the failpoint are recorded: an unfinished step left nothing.
        assert steps_done(saga) == list(CRASH_STEPS[: CRASH_STEPS.index(step)]), point
        assert (saga.status, saga.attempts) == (SagaStatus.RUNNING, 1), point
        assert saga.amount == (held if "settle" in steps_done(saga) else 0), point
        # mark_shard's update was rolled back with its record, even when killed inside it.
        assert Shard.objects.get(key=s.shard_key).status == ShardStatus.ONLINE, point
        if point != "crash.fence.before":  # fence.lua ran: verify_boss shows the unfinished saga
            assert any("is running" in p for p in boss_verify(boss=boss).problems), point

        scan_until_settled(saga)  # the crash scan resumes it, as it would after a dead worker
        assert saga.status == SagaStatus.COMPLETED, (point, saga.detail)
        assert steps_done(saga) == list(CRASH_STEPS) and saga.attempts == 2, point
        assert (saga.policy, saga.amount) == (policy, held), point
        # Killed after fence.lua ran but before its record, the resume ran it again and got the
        # first settlement back ('already'); a recorded fence was not run again.
        assert saga.steps[0]["outcome"] == ("already" if point == "crash.fence.inside" else "fenced")
        assert Shard.objects.get(key=s.shard_key).status == ShardStatus.CRASHED, point

        with pytest.raises(Fenced) as err:  # settled once: the session reports that settlement
            delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=2, amount=INFLIGHT)
        extra = dict(err.value.extra)
        assert isinstance(extra.pop("credited", {}), dict), point  # whom a fair settlement credited
        assert extra == {"last_seq": 1, "policy": policy, "settled": held}, point
        boss_tick(boss_id=boss.pk, force=True)
        report = boss_verify(boss=boss)
        assert report.ok, (point, report.problems)
        if policy == "fair":  # applied once: the accepted 30 and the held damage
            assert (report.applied, report.recovered, report.discarded) == (30 + held, held, 0), point
        else:  # discarded once, never applied
            assert (report.applied, report.recovered, report.discarded) == (30, 0, held), point
