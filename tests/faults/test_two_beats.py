"""Two Celery beats at once (docs/faults.md): every periodic task is enqueued twice.

The platform (uvicorn, a worker) runs with two beats (tests/support/processes.py
``start_beat`` twice, 200 ms crash scan), so the sync tick, the crash scan and the saga
sweeps all run twice per period, often concurrently. Two game servers on the real SDK
(tests/faults/sdk_proc.py) feed a *fair* boss: one with five players; one (``hold`` mode) that
lands 300, then, while the boss is paused, holds 450 its heartbeats report, and is killed
(``kill -9``): two crash scans find it silent past the 2 s heartbeat timeout. The boss
resumes, then a third shard lands the killing blow and the victory saga pays the rewards.
Ticks and sagas happen exactly once: versions 1..n and the log replays to HP
(``verify_boss``), every point generated is applied, per player too, one crash saga that
recovered the 450 once, one victory saga, one reward per player. Figures are
printed (``TWO BEATS {...}``).
"""

from __future__ import annotations

import json
import signal

import pytest

from bosses.models import Contribution, RewardGrant, SagaRun, SagaStatus
from bosses.services import boss_go_live, boss_pause, boss_resume
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_authenticate, shard_create, shard_session_open
from tests.faults.conftest import FAST, start_server
from tests.support import processes
from tests.support.authority import delta_ingest
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault, pytest.mark.timeout(180)]

MAX_HP = 10_000_000
HELD = 450  # what the killed game server held (tests/faults/sdk_proc.py, ``hold`` mode)


@pytest.fixture
def two_beat_platform(transactional_db):
    server, url = start_server()
    procs = [server]
    try:
        procs += [processes.start_worker(**FAST), processes.start_beat(**FAST), processes.start_beat(**FAST)]
        yield url
    finally:
        for proc in reversed(procs):
            proc.discard()


def completed(boss, kind: str, **fields) -> list[SagaRun]:
    return list(SagaRun.objects.filter(boss=boss, kind=kind, status=SagaStatus.COMPLETED, **fields))


def test_two_beats_tick_and_run_sagas_exactly_once(two_beat_platform, sdk_procs, make_boss):
    url = two_beat_platform
    boss = make_boss(
        slug="two-beats",
        max_hp=MAX_HP,
        crash_policy="fair",
        heartbeat_interval_ms=100,
        heartbeat_timeout_ms=2_000,
    )
    boss_go_live(boss=boss)
    k = keys.BossKeys(boss.pk)
    r = get_redis()
    a, a_token = shard_create(key="beats-a", name="A")
    b, b_token = shard_create(key="beats-b", name="B")
    with_players = sdk_procs(url, a.key, a_token, boss.slug, "players")
    holder = sdk_procs(url, b.key, b_token, boss.slug, "hold")
    flushed = holder.wait_line("FLUSHED")  # 300 acknowledged
    boss_pause(boss=boss)  # deltas are refused now; heartbeats still report what is held
    holder.signal(signal.SIGUSR1)
    holding = holder.wait_line("HOLDING")
    assert holding["unacked"] == HELD, holding
    sess = keys.session_id(b.key, flushed["epoch"])
    wait_until(lambda: int(r.hget(k.held, sess) or 0) == HELD, timeout_s=30, what="its held report")
    holder.kill9()  # gone while holding: two crash scans see it silent past the timeout
    crash = wait_until(lambda: completed(boss, "crash", shard_key=b.key), timeout_s=60, what="B's crash saga")
    boss_resume(boss=boss)
    wait_until(lambda: int(r.hget(k.contrib, a.key) or 0) > 2_000, timeout_s=60, what="A's damage landing")
    resumed_at = int(r.hget(k.state, "version"))
    wait_until(lambda: int(r.hget(k.state, "version")) >= resumed_at + 30, timeout_s=60, what="30 ticks more")
    with_players.signal(signal.SIGUSR1)
    done_a = with_players.wait_line("DONE", timeout_s=60)
    assert done_a["flushed"], done_a
    wait_until(lambda: r.hlen(k.buf) == 0 and r.hlen(k.pbuf) == 0, timeout_s=30, what="the tick drains")
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    generated = done_a["generated"] + 300 + HELD
    assert report.applied == generated and report.discarded == 0, report
    assert [s.amount for s in crash] == [HELD] and report.recovered == HELD, crash  # settled once
    assert {p: int(v) for p, v in r.hgetall(k.players).items()} == {
        **done_a["per_player"],
        "alice": 300,
        "bob": HELD,
    }

    slayer, slayer_token = shard_create(key="beats-slayer", name="Slayer")
    session = shard_session_open(shard=shard_authenticate(shard_key=slayer.key, token=slayer_token))
    blow = report.hp
    delta_ingest(
        boss_id=boss.pk,
        shard_key=slayer.key,
        epoch=session.epoch,
        seq=1,
        amount=blow,
        breakdown={"slayer": blow},
    )
    wait_until(lambda: completed(boss, "victory"), timeout_s=60, what="the victory saga")
    report = boss_verify(boss=boss)
    assert report.ok and report.status == "defeated" and report.applied == MAX_HP, report
    assert len(SagaRun.objects.filter(boss=boss, kind="victory")) == 1
    assert len(SagaRun.objects.filter(boss=boss, kind="crash", shard_key=b.key, epoch=flushed["epoch"])) == 1
    credit = {p: int(v) for p, v in r.hgetall(k.players).items()}
    assert credit == {**done_a["per_player"], "alice": 300, "bob": HELD, "slayer": blow}
    paid = dict(Contribution.objects.filter(boss=boss, kind="player").values_list("name", "damage"))
    assert paid == credit
    grants = list(RewardGrant.objects.filter(boss=boss).values_list("player", "tier"))
    assert sorted(player for player, _ in grants) == sorted(credit), grants  # one reward each (default table)
    figures = {
        "beats": 2,
        "versions": report.version,
        "generated": generated,
        "crash_sagas_of_the_stopped_session": 1,
        "settled": crash[0].amount,
        "recovered": report.recovered,
        "victory_sagas": 1,
        "rewards": len(grants),
        "longest_without_acks_s_boss_paused_included": done_a["longest_gap_s"],
    }
    print("\nTWO BEATS", json.dumps(figures))
