"""Operator selectors against a real Redis: shard health, buffers, DPS, tick lag, feeds.

Heartbeats are stamped by Redis ``TIME`` inside the Lua scripts; the selectors' "now" comes
from an injected :class:`core.clock.ManualClock` set relative to those stamps, so a shard
turns late because the clock moved, not because the test slept.
"""

from __future__ import annotations

from bosses.ops_selectors import (
    LATE_AFTER_INTERVALS,
    ShardHealth,
    ops_dps,
    ops_overview,
    ops_shard_rows,
    ops_snapshot,
)
from bosses.sagas.crash import session_fence
from bosses.services import boss_pause, boss_tick, boss_tick_all
from core import keys
from core.clock import ManualClock, RedisClock
from core.redis import get_redis
from shards.models import Shard
from tests.support.authority import delta_ingest, heartbeat_record
from tests.support.waiting import wait_until


def rows_by_key(boss, clock=None):
    return {r.key: r for r in ops_shard_rows(boss=boss, clock=clock)}


def heartbeat_stamp(boss, session) -> int:
    """The Redis ``TIME`` (ms) the scripts stamped on ``session``'s last sign of life."""
    field = keys.session_id(session.shard_key, session.epoch)
    return int(get_redis().hget(keys.BossKeys(boss.pk).hb, field))


def test_shard_rows_follow_buffers_heartbeats_and_crash_sagas(make_boss, make_session):
    interval = 300
    late_after = interval * LATE_AFTER_INTERVALS
    boss = make_boss(heartbeat_interval_ms=interval, heartbeat_timeout_ms=60_000)
    from bosses.services import boss_go_live

    boss_go_live(boss=boss)
    healthy, late, crashed = make_session("eu-1"), make_session("us-1"), make_session("ap-1")
    make_session("idle-1")
    for s, amount in ((healthy, 300), (late, 200), (crashed, 100)):
        delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=amount)
    heartbeat_record(boss_id=boss.pk, shard_key=crashed.shard_key, epoch=crashed.epoch, pending=40)
    heartbeat_record(boss_id=boss.pk, shard_key=late.shard_key, epoch=late.epoch, pending=7)
    late_stamp = heartbeat_stamp(boss, late)
    # eu-1 must speak at a later Redis millisecond than us-1 (a couple of ms at most)
    redis_clock = RedisClock(get_redis())
    wait_until(lambda: redis_clock.now_ms() >= late_stamp + 2, timeout_s=2, what="Redis TIME to move on")
    heartbeat_record(boss_id=boss.pk, shard_key=healthy.shard_key, epoch=healthy.epoch, pending=5)
    healthy_stamp = heartbeat_stamp(boss, healthy)

    # "now" one ms past us-1's lateness: us-1 is late, eu-1 (which spoke later) is not yet
    clock = ManualClock(late_stamp + late_after + 1)
    rows = rows_by_key(boss, clock)
    assert rows["eu-1"].health == ShardHealth.OK
    assert rows["us-1"].health == ShardHealth.LATE
    assert rows["idle-1"].health == ShardHealth.IDLE and rows["idle-1"].contribution == 0
    assert (rows["eu-1"].buffered, rows["eu-1"].held, rows["eu-1"].contribution) == (300, 5, 300)
    assert (rows["eu-1"].epoch, rows["eu-1"].last_seq) == (healthy.epoch, 1)
    assert rows["us-1"].heartbeat_age_ms == late_after + 1
    assert rows["eu-1"].heartbeat_age_ms == clock.now_ms() - healthy_stamp <= late_after
    # ... and once eu-1 is as silent as us-1 was, it is late too
    clock.advance(healthy_stamp - late_stamp)
    assert rows_by_key(boss, clock)["eu-1"].health == ShardHealth.LATE

    saga = session_fence(boss=boss, shard_key=crashed.shard_key, epoch=crashed.epoch)
    assert saga.amount == 40
    rows = rows_by_key(boss)
    ap = rows["ap-1"]
    assert ap.health == ShardHealth.CRASHED and ap.status == "crashed"
    assert ap.sessions[0].settled == "fair:40"
    assert ap.held == 0  # a settled session holds nothing any more
    assert ap.buffered == 140  # its accepted 100 plus the 40 the fair saga recovered

    boss_tick(boss_id=boss.pk, force=True)
    rows = rows_by_key(boss)
    assert all(r.buffered == 0 for r in rows.values())
    assert rows["eu-1"].contribution == 300 and rows["us-1"].contribution == 200


def test_retired_shard_is_marked_retired(live_boss, make_session):
    s = make_session("old-1")
    delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=10)
    from bosses.sagas.crash import shard_retire

    shard_retire(shard=Shard.objects.get(key="old-1"))
    assert rows_by_key(live_boss)["old-1"].health == ShardHealth.RETIRED


def test_dps_counts_only_ticks_inside_the_window():
    now = 100_000
    entries = [
        {"kind": "tick", "ts": now - 1_000, "applied": 400},
        {"kind": "tick", "ts": now - 4_900, "applied": 100},
        {"kind": "tick", "ts": now - 5_000, "applied": 9_999},  # exactly at the edge: out
        {"kind": "status", "ts": now - 10, "applied": 0},
    ]
    assert ops_dps(entries=entries, now_ms=now, window_ms=5_000) == {
        "window_ms": 5_000,
        "applied": 500,
        "dps": 100.0,
    }


def test_snapshot_has_state_ledger_events_series_sagas_and_tick_lag(live_boss, make_session):
    s = make_session("eu-1")
    for seq, amount in enumerate((1_000, 2_500), start=1):
        delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount)
        boss_tick_all()
        boss_tick(boss_id=live_boss.pk, force=True)
    boss_pause(boss=live_boss)
    r = get_redis()
    newest_beat = int(r.lindex(keys.TICK_TIMES, 0))
    last_applied = int(r.hget(keys.BossKeys(live_boss.pk).state, "last_tick_ms"))
    clock = ManualClock(max(newest_beat, last_applied) + 250)
    snap = ops_snapshot(boss=live_boss, with_series=True, clock=clock)

    state = snap["state"]
    assert (state["hp"], state["status"]) == (1_000_000 - 3_500, "paused")
    assert snap["ledger"]["accepted"] == snap["ledger"]["applied"] == 3_500 and snap["buffered"] == 0
    assert snap["ledger"]["mitigated"] == snap["ledger"]["healed"] == 0
    assert [e["kind"] for e in snap["events"][:3]] == ["status", "tick", "tick"]
    assert snap["events"][1]["deltas"] == {f"eu-1:{s.epoch}": 2_500}
    assert [p[1] for p in snap["series"]] == [1_000_000, 999_000, 996_500, 996_500]
    assert [p[2] for p in snap["series"]] == list(range(1, state["version"] + 1))
    assert snap["dps"]["applied"] == 3_500 and snap["dps"]["dps"] == 700.0
    assert snap["server_ms"] == clock.now_ms()
    assert snap["tick"]["beat_age_ms"] == clock.now_ms() - newest_beat and snap["tick"]["samples"] == 1
    assert snap["tick"]["apply_age_ms"] == clock.now_ms() - last_applied
    # five seconds on, both ticks have left the DPS window; the lags grew by exactly that
    clock.advance(5_000)
    later = ops_snapshot(boss=live_boss, clock=clock)
    assert later["dps"]["applied"] == 0
    assert later["tick"]["beat_age_ms"] == snap["tick"]["beat_age_ms"] + 5_000
    assert snap["health"]["ok"] == 1 and snap["shards"][0]["contribution"] == 3_500
    assert snap["sagas"] == []

    session_fence(boss=live_boss, shard_key=s.shard_key, epoch=s.epoch)
    sagas = ops_snapshot(boss=live_boss)["sagas"]
    assert [(x["kind"], x["status"], x["shard"]) for x in sagas] == [("crash", "completed", "eu-1")]
    assert "series" not in ops_snapshot(boss=live_boss)


def test_overview_shows_draft_and_live(make_boss, live_boss):
    draft = make_boss(name="Sleeping", max_hp=500)
    rows = {r["boss"].slug: r for r in ops_overview()}
    assert rows[draft.slug]["state"]["status"] == "draft" and rows[draft.slug]["state"]["hp"] == 500
    assert not rows[draft.slug]["has_authority"]
    assert rows[live_boss.slug]["state"]["status"] == "live" and rows[live_boss.slug]["has_authority"]


def test_tick_lag_without_any_tick(live_boss):
    get_redis().delete(keys.TICK_TIMES)
    tick = ops_snapshot(boss=live_boss)["tick"]
    assert tick["beat_age_ms"] is None and tick["interval_p99_ms"] is None


def test_after_the_fight_silent_shards_are_done_not_late(make_boss, make_session):
    from bosses.services import boss_end, boss_go_live

    boss = make_boss(heartbeat_interval_ms=100, heartbeat_timeout_ms=60_000)
    boss_go_live(boss=boss)
    s = make_session("eu-1")
    delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=s.epoch, seq=1, amount=10)
    # a delta is a sign of life too: silent for more than two 100 ms intervals after it
    clock = ManualClock(heartbeat_stamp(boss, s))
    assert rows_by_key(boss, clock)["eu-1"].health == ShardHealth.OK
    clock.advance(100 * LATE_AFTER_INTERVALS + 1)
    assert rows_by_key(boss, clock)["eu-1"].health == ShardHealth.LATE
    boss_end(boss=boss)
    assert rows_by_key(boss, clock)["eu-1"].health == ShardHealth.DONE
    assert ops_snapshot(boss=boss, clock=clock)["health"]["done"] == 1
