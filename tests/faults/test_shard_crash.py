"""A game-server shard process killed (-9) or cut off (SIGSTOP/SIGCONT) while holding damage.

Real processes: the shard (tests/faults/shard_proc.py), a Celery worker and beat running the
sync tick and the crash scan every 200 ms. Nothing is lost or doubled; fair applies exactly
the last reported buffer, harsh discards and records exactly that.
"""

from __future__ import annotations

import time

import pytest

from bosses.models import SagaRun, SagaStatus
from bosses.selectors import boss_ledger
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from core.errors import Fenced
from core.redis import get_redis
from shards.models import Shard, ShardStatus
from shards.services import shard_authenticate, shard_create, shard_session_open
from tests.faults.conftest import wait_until
from tests.support.authority import delta_ingest

pytestmark = [pytest.mark.process, pytest.mark.fault]

MAX_HP = 10_000_000
TIMEOUT_MS = 1_000


def crash_boss(make_boss, policy: str):
    boss = make_boss(
        max_hp=MAX_HP, crash_policy=policy, heartbeat_interval_ms=200, heartbeat_timeout_ms=TIMEOUT_MS
    )
    boss_go_live(boss=boss)
    return boss


def completed_saga(boss, shard_key: str, epoch: int) -> SagaRun | None:
    return SagaRun.objects.filter(
        boss=boss, kind="crash", shard_key=shard_key, epoch=epoch, status=SagaStatus.COMPLETED
    ).first()


def drained(boss) -> bool:
    return not get_redis().hlen(keys.BossKeys(boss.pk).buf)


@pytest.mark.parametrize("policy", ["fair", "harsh"])
def test_killed_shard_holding_damage_is_settled_exactly_once(stack, shard_procs, make_boss, policy):
    boss = crash_boss(make_boss, policy)
    shard, token = shard_create(key=f"gs-{policy}", name="game server")
    proc = shard_procs("hold", str(boss.pk), shard.key, "3", "45", "25")
    holding = proc.wait_line("HOLDING")
    killed_at = time.monotonic()
    proc.kill9()

    saga = wait_until(lambda: completed_saga(boss, shard.key, holding["epoch"]), what="the crash saga")
    detected_s = time.monotonic() - killed_at
    assert (saga.policy, saga.amount) == (policy, 45 + 25)  # its last reported buffer, exactly
    assert [s["step"] for s in saga.steps] == ["fence", "settle", "mark_shard"]
    assert saga.steps[1]["outcome"] == ("recovered" if policy == "fair" else "discarded")
    assert saga.steps[0]["outcome"] == "fenced" and saga.detail["last_seq"] == 3
    assert saga.detail["silent_ms"] > TIMEOUT_MS and saga.attempts == 1 and saga.finished_at
    assert detected_s < 10  # loose sanity bound: timeout 1 s + a 200 ms scan
    assert Shard.objects.get(pk=shard.pk).status == ShardStatus.CRASHED

    wait_until(lambda: drained(boss), what="the tick to drain the buffers")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    expected = 30 + (70 if policy == "fair" else 0)
    assert report.hp == MAX_HP - expected and report.applied == expected
    assert (report.recovered, report.discarded) == ((70, 0) if policy == "fair" else (0, 70))

    # The shard comes back: it re-authenticates and gets a new epoch; the old one stays fenced.
    back = shard_session_open(shard=shard_authenticate(shard_key=shard.key, token=token))
    assert back.epoch == holding["epoch"] + 1
    assert Shard.objects.get(pk=shard.pk).status == ShardStatus.ONLINE
    with pytest.raises(Fenced) as err:
        delta_ingest(boss_id=boss.pk, shard_key=shard.key, epoch=holding["epoch"], seq=4, amount=25)
    extra = dict(err.value.extra)
    assert extra.pop("credited", {}) == {}  # a fair settlement names whom it credited: no breakdown held here
    assert extra == {"last_seq": 3, "policy": policy, "settled": 70}
    # What the saga did not settle (nothing here) goes out under the new epoch from seq 1.
    delta_ingest(boss_id=boss.pk, shard_key=shard.key, epoch=back.epoch, seq=1, amount=5)
    wait_until(lambda: drained(boss), what="the tick")
    report = boss_verify(boss=boss)
    assert report.ok and report.hp == MAX_HP - expected - 5


@pytest.mark.parametrize("policy", ["fair", "harsh"])
def test_shard_cut_off_then_back_cannot_double_apply(stack, shard_procs, make_boss, policy):
    boss = crash_boss(make_boss, policy)
    shard, _ = shard_create(key=f"cut-{policy}", name="cut off")
    proc = shard_procs("run", str(boss.pk), shard.key, TICK_MS="40", HITS="3")
    first = proc.wait_line("SESSION")
    wait_until(lambda: boss_ledger(boss_id=boss.pk).number("applied") > 0, what="damage applied")
    held = keys.BossKeys(boss.pk).held, f"{shard.key}:{first['epoch']}"
    for _ in range(20):  # cut off while the platform knows it holds damage (nearly always)
        time.sleep(0.13)  # the scenario: a cut at some moment of its flow of deltas
        proc.pause()  # no heartbeat, no delta; it keeps its buffer and in-flight delta
        if int(get_redis().hget(*held) or 0) > 0:
            break
        proc.resume()
    saga = wait_until(lambda: completed_saga(boss, shard.key, first["epoch"]), what="the crash saga")
    assert Shard.objects.get(pk=shard.pk).status == ShardStatus.CRASHED
    proc.resume()  # back: its next delta or heartbeat is refused as fenced; it rejoins
    fenced = proc.wait_line("FENCED")
    assert fenced["epoch"] == first["epoch"] and fenced["settled"] == saga.amount
    assert fenced["policy"] == policy and fenced["dropped"] == saga.amount
    wait_until(lambda: len(proc.lines("SESSION")) == 2, what="a new session")
    time.sleep(0.5)  # the scenario: it fights on for a while in its new session
    proc.signal(__import__("signal").SIGUSR1)  # stop hitting, flush everything
    done = proc.wait_line("DONE")
    assert done["fences"] == 1 and done["generated"] == done["accepted"] + done["dropped"]
    wait_until(lambda: drained(boss), what="the tick to drain the buffers")

    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    if policy == "fair":  # every hit it generated lands exactly once: sent, or applied by the saga
        assert report.hp == MAX_HP - done["generated"] and report.recovered == saga.amount
    else:  # what it held at its last heartbeat is discarded, recorded, never applied
        assert report.hp == MAX_HP - (done["generated"] - saga.amount)
        assert report.discarded == saga.amount
    assert saga.amount > 0  # it really was holding damage when it was cut off
    assert Shard.objects.get(pk=shard.pk).status == ShardStatus.ONLINE
