"""The boss dies while a far game server is cut off holding damage (docs/faults.md, "The
fault rig").

The installed SDK (tests/faults/sdk_proc.py, ``players`` mode) in its namespace behind
150 +/- 30 ms and 1 % loss each way feeds a *fair* boss; the link is cut, and a second shard
on the host lands the killing blow at once. The far server holds what it hit during the cut and
what was on the way (the platform's held report is only what its last heartbeat named, less
the deltas that arrived after it: often 0); the crash scan watches live bosses only, so a boss that is over fences nobody, and
that held damage is never applied, recovered or credited. After the heal the SDK resumes its
epoch, its delta is refused ``not_live defeated`` (which clears the session's held report)
and it gives up everything it still held. The books:
``applied = max_hp``, ``accepted = applied + overkill``, nothing recovered, every accepted
point credited to the player who dealt it, and for the far server ``generated = accepted +
dropped`` exactly. Figures are printed (``DEFEAT IN PARTITION {...}``).
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from bosses.models import SagaRun
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_authenticate, shard_create, shard_session_open
from tests.faults.netns.conftest import FarSdk
from tests.support.authority import delta_ingest
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault, pytest.mark.timeout(240)]

MAX_HP = 1_000_000
HEARTBEAT_TIMEOUT_MS = 2_000


def test_a_defeat_during_a_partition_never_credits_the_cut_off_servers_held_damage(rig_platform, make_boss):
    host, url = rig_platform
    boss = make_boss(
        slug="dies",
        max_hp=MAX_HP,
        crash_policy="fair",
        heartbeat_interval_ms=100,
        heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS,
    )
    boss_go_live(boss=boss)
    far, far_token = shard_create(key="far-1", name="Far 1", region="far")
    killer, killer_token = shard_create(key="near-1", name="Near 1")
    k = keys.BossKeys(boss.pk)
    r = get_redis()
    sdk = FarSdk(host, url, far.key, far_token, boss.slug, "players")
    try:
        wait_until(lambda: sdk.latest()["acked"] > 2_000, timeout_s=60, what="acks over the far link")
        first_epoch = sdk.latest()["epoch"]

        host.cut()
        cut_at = time.monotonic()
        session = shard_session_open(shard=shard_authenticate(shard_key=killer.key, token=killer_token))
        blow = MAX_HP  # more than what is left: the rest is overkill
        delta_ingest(
            boss_id=boss.pk,
            shard_key=killer.key,
            epoch=session.epoch,
            seq=1,
            amount=blow,
            breakdown={"slayer": blow},
        )
        wait_until(lambda: r.hget(k.state, "status") == "defeated", timeout_s=30, what="the defeat")
        defeated_after_s = time.monotonic() - cut_at
        sess = keys.session_id(far.key, first_epoch)
        held_at_defeat = int(r.hget(k.held, sess) or 0)  # the platform's view: often 0 (see below)
        connects = sdk.latest()["connects"]
        wait_until(lambda: time.monotonic() - cut_at >= 4.0, timeout_s=10, what="a 4 s partition")
        host.heal()
        healed_at = time.monotonic()
        wait_until(
            lambda: sdk.latest()["connects"] > connects, timeout_s=60, what="a reconnect after the heal"
        )
        reconnected_after_heal_s = time.monotonic() - healed_at
        # Its first delta there is refused ``not_live defeated``, which clears the held report.
        wait_until(lambda: not r.hexists(k.held, sess), timeout_s=60, what="the held report cleared")
        sdk.signal(signal.SIGUSR1)
        done = sdk.wait_line("DONE", timeout_s=90)
    finally:
        sdk.discard()
    assert done["ended"] and done["fences"] == 0 and done["epoch"] == first_epoch, done
    wait_until(lambda: r.hlen(k.buf) == 0 and r.hlen(k.pbuf) == 0, timeout_s=30, what="the tick drains")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.status == "defeated" and report.applied == MAX_HP and report.hp == 0, report
    assert report.recovered == 0 and report.discarded == 0, report
    assert done["dropped"] > 0 and done["dropped"] >= held_at_defeat, (held_at_defeat, done)
    assert not SagaRun.objects.filter(kind="crash", amount__gt=0).exists()
    assert report.accepted == report.applied + report.overkill, report
    far_accepted = int(r.hget(k.contrib, far.key) or 0)
    assert far_accepted + blow == report.accepted, (far_accepted, report)
    assert far_accepted + done["dropped"] == done["generated"], (far_accepted, done)
    credit = {p: int(v) for p, v in r.hgetall(k.players).items()}
    assert credit.pop("slayer") == blow
    assert sum(credit.values()) == far_accepted, (credit, far_accepted)
    assert all(credit.get(p, 0) <= made for p, made in done["per_player"].items()), (credit, done)
    figures = {
        "link": "150 +/- 30 ms, 1 % loss each way",
        "partition_s": round(healed_at - cut_at, 3),
        "cut_to_defeat_s": round(defeated_after_s, 3),
        "held_at_defeat": held_at_defeat,
        "heal_to_reconnect_s": round(reconnected_after_heal_s, 3),
        "far_generated": done["generated"],
        "far_accepted": far_accepted,
        "far_dropped": done["dropped"],
        "overkill": report.overkill,
        "epochs": [first_epoch, done["epoch"]],
    }
    print("\nDEFEAT IN PARTITION", json.dumps(figures))
