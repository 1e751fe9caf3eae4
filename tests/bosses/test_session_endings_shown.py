"""A session that left cleanly is no crash on any screen: the dashboard's shard rows and
counts, the ``/ops/`` overview, the fight report and the API's timeline (docs/sagas.md:
only the reason ``crashed`` is a crash)."""

from __future__ import annotations

import pytest

from api.selectors import fight_timeline
from bosses.ops_selectors import ShardHealth, ops_overview_live, ops_shard_rows, ops_snapshot
from bosses.report import fight_report
from bosses.sagas.crash import session_end, session_fence
from bosses.services import boss_go_live, boss_tick, event_log_archive
from tests.support.authority import delta_ingest, heartbeat_record
from tests.support.frame_schema import check_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_left_one_crashed(make_boss, make_session):
    """eu-1 says ``bye`` (reason ``left``), us-1 is fenced by the crash path; both hit once."""
    boss = make_boss(slug="endings", crash_policy="fair")
    boss_go_live(boss=boss)
    eu, us = make_session("eu-1"), make_session("us-1")
    for s, amount in ((eu, 300), (us, 200)):
        delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=amount)
    heartbeat_record(boss_id=boss.pk, shard_key="us-1", epoch=us.epoch, pending=40)
    boss_tick(boss_id=boss.pk, force=True)
    assert session_end(shard_key="eu-1", epoch=eu.epoch, reason="left") == {boss.slug: 0}
    session_fence(boss=boss, shard_key="us-1", epoch=us.epoch)
    boss_tick(boss_id=boss.pk, force=True)
    event_log_archive(boss=boss)
    return boss


def test_dashboard_rows_and_counts_say_left_not_crashed(one_left_one_crashed):
    boss = one_left_one_crashed
    rows = {r.key: r for r in ops_shard_rows(boss=boss)}
    assert rows["eu-1"].health == ShardHealth.LEFT and rows["eu-1"].status == "online"
    assert rows["eu-1"].sessions[0].ended == "left"
    assert rows["us-1"].health == ShardHealth.CRASHED and rows["us-1"].sessions[0].ended == "crash"
    snap = ops_snapshot(boss=boss)
    check_frame(snap)
    health = snap["health"]
    assert (health["ok"], health["crashed"], health["left"]) == (0, 1, 1)


def test_overview_counts_left_apart_from_crashed(one_left_one_crashed):
    overview = ops_overview_live()
    check_frame(overview)
    [row] = [b for b in overview["bosses"] if b["slug"] == "endings"]
    assert row["shards"] == {"ok": 0, "late": 0, "crashed": 1, "left": 1}


def test_report_counts_one_crash_and_one_left(one_left_one_crashed):
    report = fight_report(boss=one_left_one_crashed, fight=1)
    assert (report["summary"]["crashes"], report["summary"]["left"]) == (1, 1)
    kinds = {m["shard"]: (m["kind"], m["reason"]) for m in report["marks"]["sagas"]}
    assert kinds == {"eu-1": ("left", "left"), "us-1": ("crash", "crashed")}


def test_timeline_lists_a_left_entry_not_a_crash(one_left_one_crashed):
    items = fight_timeline(boss=one_left_one_crashed, fight=1, offset=0, limit=100)["items"]
    endings = {i["shard"]: i["kind"] for i in items if i.get("shard")}
    assert endings == {"eu-1": "left", "us-1": "crash"}
