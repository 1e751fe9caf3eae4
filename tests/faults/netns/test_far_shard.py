"""A far game server: the installed SDK in a namespace of its own, 150 +/- 30 ms and 1 % loss
each way, then a 3 s partition (docs/faults.md, "The fault rig").

The platform runs on the host (uvicorn on the link's host address, a Celery worker and beat);
the game server (tests/faults/sdk_proc.py, ``players`` mode: five players) runs in the
namespace behind the link emulator (tools/faults/link.py). The fight ends with every point
generated applied, per player too, and ``verify_boss`` OK; the availability figures are
printed (``FAR SHARD {...}``): the longest time without acks, the time from the heal to the
first new ack, the epochs used.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_create
from tests.faults.netns.conftest import FarSdk
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault, pytest.mark.timeout(240)]

PARTITION_S = 3.0
MAX_HP = 50_000_000
# Longer than a 3 s partition plus TCP's retransmission back-off after it: this scenario
# measures the link, not a fence (a fence's settlement is the crash scenarios' subject).
HEARTBEAT_TIMEOUT_MS = 15_000


def test_far_shard_through_a_3s_partition_applies_every_point(rig_platform, make_boss):
    host, url = rig_platform
    boss = make_boss(
        slug="far",
        max_hp=MAX_HP,
        crash_policy="fair",
        heartbeat_interval_ms=100,
        heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS,
    )
    boss_go_live(boss=boss)
    shard, token = shard_create(key="far-1", name="Far 1", region="far")
    sdk = FarSdk(host, url, shard.key, token, boss.slug, "players")
    try:
        wait_until(lambda: sdk.latest()["acked"] > 2_000, timeout_s=60, what="acks over the far link")
        before = sdk.latest()

        host.cut()
        cut_at = time.monotonic()
        wait_until(
            lambda: time.monotonic() - cut_at >= PARTITION_S, timeout_s=PARTITION_S + 5, what="the partition"
        )
        host.heal()
        healed_at = time.monotonic()
        wait_until(lambda: sdk.latest()["last_ack_t"] > healed_at, timeout_s=60, what="an ack after the heal")
        first_ack_after_heal = sdk.latest()["last_ack_t"]
        acked_after = sdk.latest()["acked"]
        wait_until(lambda: sdk.latest()["acked"] > acked_after + 2_000, timeout_s=60, what="acks going on")

        sdk.signal(signal.SIGUSR1)
        done = sdk.wait_line("DONE", timeout_s=90)
    finally:
        sdk.discard()
    assert done["flushed"], done
    k = keys.BossKeys(boss.pk)
    r = get_redis()
    wait_until(lambda: r.hlen(k.buf) == 0 and r.hlen(k.pbuf) == 0, timeout_s=30, what="the tick drains")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.applied == done["generated"] and report.discarded == 0, (report, done)
    assert {p: int(v) for p, v in r.hgetall(k.players).items()} == done["per_player"]
    figures = {
        "link": "150 +/- 30 ms, 1 % loss each way",
        "partition_s": PARTITION_S,
        "longest_without_acks_s": done["longest_gap_s"],
        "heal_to_first_ack_s": round(first_ack_after_heal - healed_at, 3),
        "epochs": sorted({before["epoch"], done["epoch"]}),
        "fences": done["fences"],
        "connects": done["connects"],
        "generated": done["generated"],
    }
    print("\nFAR SHARD", json.dumps(figures))
