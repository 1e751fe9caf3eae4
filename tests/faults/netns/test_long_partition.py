"""A far game server cut off for longer than the heartbeat timeout, then healed
(docs/faults.md, "The fault rig").

The installed SDK (tests/faults/sdk_proc.py, ``players`` mode) in its namespace behind
150 +/- 30 ms and 1 % loss each way; the link is cut for 5 s against a 2 s heartbeat
timeout, so the crash scan fences the session during the partition and its *fair* crash saga
settles what the last heartbeat reported held. After the heal the SDK is told ``fenced``,
drops the settled amount (``credited`` per player) and goes on under a new epoch. The fight
ends with every point generated applied, per player too, and ``verify_boss`` OK; the figures
are printed (``LONG PARTITION {...}``): the time from the heal to the next ack and to the new
epoch, the longest time without acks.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from bosses.models import SagaRun, SagaStatus
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_create
from tests.faults.netns.conftest import FarSdk
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault, pytest.mark.timeout(240)]

HEARTBEAT_TIMEOUT_MS = 2_000
MAX_HP = 50_000_000


def settled(boss, epoch: int) -> SagaRun | None:
    return SagaRun.objects.filter(
        boss=boss, kind="crash", shard_key="long-1", epoch=epoch, status=SagaStatus.COMPLETED
    ).first()


def test_a_long_partition_is_fenced_fair_and_acks_resume_after_the_heal(rig_platform, make_boss):
    host, url = rig_platform
    boss = make_boss(
        slug="long",
        max_hp=MAX_HP,
        crash_policy="fair",
        heartbeat_interval_ms=100,
        heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS,
    )
    boss_go_live(boss=boss)
    shard, token = shard_create(key="long-1", name="Long 1", region="far")
    sdk = FarSdk(host, url, shard.key, token, boss.slug, "players")
    try:
        wait_until(lambda: sdk.latest()["acked"] > 2_000, timeout_s=60, what="acks over the far link")
        first_epoch = sdk.latest()["epoch"]

        host.cut()
        cut_at = time.monotonic()
        saga = wait_until(lambda: settled(boss, first_epoch), timeout_s=60, what="the fence during the cut")
        fenced_after_s = time.monotonic() - cut_at
        wait_until(lambda: time.monotonic() - cut_at >= 5.0, timeout_s=10, what="a 5 s partition")
        host.heal()
        healed_at = time.monotonic()
        wait_until(lambda: sdk.latest()["last_ack_t"] > healed_at, timeout_s=60, what="an ack after the heal")
        first_ack = sdk.latest()["last_ack_t"]
        wait_until(lambda: sdk.latest()["epoch"] not in (None, first_epoch), timeout_s=60, what="a new epoch")
        new_epoch_t = next(
            row["t"] for row in sdk.lines("PROGRESS") if row["t"] > healed_at and row["epoch"] != first_epoch
        )
        acked_after = sdk.latest()["acked"]
        wait_until(lambda: sdk.latest()["acked"] > acked_after + 2_000, timeout_s=60, what="acks going on")

        sdk.signal(signal.SIGUSR1)
        done = sdk.wait_line("DONE", timeout_s=90)
    finally:
        sdk.discard()
    assert done["flushed"], done
    assert done["fences"] >= 1 and done["epoch"] != first_epoch, done
    k = keys.BossKeys(boss.pk)
    r = get_redis()
    wait_until(lambda: r.hlen(k.buf) == 0 and r.hlen(k.pbuf) == 0, timeout_s=30, what="the tick drains")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.applied == done["generated"] and report.discarded == 0, (report, done)
    assert {p: int(v) for p, v in r.hgetall(k.players).items()} == done["per_player"]
    figures = {
        "link": "150 +/- 30 ms, 1 % loss each way",
        "partition_s": round(healed_at - cut_at, 3),
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_MS / 1000,
        "cut_to_settled_s": round(fenced_after_s, 3),
        "settled_amount": saga.amount,
        "heal_to_first_ack_s": round(first_ack - healed_at, 3),
        "heal_to_new_epoch_s": round(new_epoch_t - healed_at, 3),
        "longest_without_acks_s": done["longest_gap_s"],
        "epochs": [first_epoch, done["epoch"]],
        "fences": done["fences"],
        "connects": done["connects"],
        "generated": done["generated"],
    }
    print("\nLONG PARTITION", json.dumps(figures))
