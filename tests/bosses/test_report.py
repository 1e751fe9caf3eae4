"""The fight report selector: a real fight archived from Redis, and a one-hour synthetic archive."""

from __future__ import annotations

import pytest

from bosses.models import BossEvent, Contribution, RewardGrant
from bosses.report import (
    HP_POINTS_MAX,
    OTHER_SERIES,
    SHARD_BUCKETS_MAX,
    SHARD_SERIES_MAX,
    UnknownFight,
    fight_report,
)
from bosses.sagas.crash import session_fence
from bosses.sagas.victory import boss_victory_run
from bosses.services import boss_end, boss_go_live, boss_reset, boss_tick, event_log_archive
from core.keys import recovered_field, session_id
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = pytest.mark.django_db


def hit(boss, s, seq, players):
    delta_ingest(
        boss_id=boss.pk,
        shard_key=s.shard_key,
        epoch=s.epoch,
        seq=seq,
        amount=sum(players.values()),
        breakdown=players,
    )


def play_won_fight(make_boss, make_session):
    """10,000 HP: eu-1 and us-1 hit, us-1 crashes holding 500 (fair: recovered), eu-1 kills;
    the victory saga archives, ranks and rewards. Returns (boss, eu session, us session).
    The view and page tests report on the same fight."""
    boss = make_boss(name="Ashen Colossus", slug="ashen", max_hp=10_000, crash_policy="fair")
    boss_go_live(boss=boss)
    eu, us = make_session("eu-1"), make_session("us-1")
    hit(boss, eu, 1, {"alice": 2_000, "bob": 1_000})
    boss_tick(boss_id=boss.pk, force=True)  # 7,000: Enraged
    hit(boss, us, 1, {"carol": 2_000})
    boss_tick(boss_id=boss.pk, force=True)  # 5,000: Frenzy
    heartbeat_record(boss_id=boss.pk, shard_key="us-1", epoch=us.epoch, pending=500)
    crash = session_fence(boss=boss, shard_key="us-1", epoch=us.epoch)
    assert crash.amount == 500
    boss_tick(boss_id=boss.pk, force=True)  # the recovered 500: 4,500
    hit(boss, eu, 2, {"alice": 3_000, "dave": 2_000})
    assert boss_tick(boss_id=boss.pk, force=True).defeated  # 500 overkill
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)  # archives the log, ranks, rewards
    boss.refresh_from_db()
    return boss, eu, us


@pytest.fixture
def won_fight(make_boss, make_session):
    """The fight of :func:`play_won_fight`."""
    return play_won_fight(make_boss, make_session)


def test_report_of_a_won_fight_with_a_crash(won_fight):
    boss, eu, us = won_fight
    report = fight_report(boss=boss, fight=1)
    s = report["summary"]
    assert (s["final_status"], s["final_hp"], s["max_hp"]) == ("defeated", 0, 10_000)
    assert (s["total_damage"], s["overkill"], s["accepted"]) == (10_000, 500, 10_500)
    assert (s["events"], s["ticks"], s["crashes"], s["restores"]) == (5, 4, 1, 0)
    assert (s["players"], s["shards"], s["victory_saga"]) == (4, 2, "completed")
    assert s["peak_dps"] > 0 and report["running"] is False

    points = [(p["version"], p["hp"]) for p in report["hp"]["points"]]
    assert points == [(1, 10_000), (2, 7_000), (3, 5_000), (4, 4_500), (5, 0)]
    assert [(m["name"], m["version"]) for m in report["marks"]["phases"]] == [
        ("Enraged", 2),
        ("Frenzy", 3),
        ("Last stand", 5),
    ]
    assert [(m["status"], m["version"]) for m in report["marks"]["statuses"]] == [
        ("live", 1),
        ("defeated", 5),
    ]
    [mark] = report["marks"]["sagas"]
    assert (mark["kind"], mark["shard"], mark["epoch"], mark["policy"], mark["amount"]) == (
        "crash",
        "us-1",
        us.epoch,
        "fair",
        500,
    )
    assert mark["status"] == "completed" and mark["reason"] == "crashed"

    # us-1's recovered field (core.keys.recovered_field) counts for us-1, as in the victory saga's ledger
    totals = {row["shard"]: row["damage"] for row in report["shards"]["totals"]}
    assert totals == {"eu-1": 8_000, "us-1": 2_500}
    assert totals == dict(
        Contribution.objects.filter(boss=boss, fight=1, kind="shard").values_list("name", "damage")
    )
    assert report["shards"]["series"] == ["eu-1", "us-1"]
    assert sum(sum(b["damage"]) for b in report["shards"]["buckets"]) == 10_500
    assert report["shards"]["buckets"][-1]["hp_end"] == 0

    board = report["leaderboard"]
    assert board["source"] == "contributions" and board["players"] == 4
    assert [(r["rank"], r["name"], r["damage"]) for r in board["rows"]] == [
        (1, "alice", 5_000),
        (2, "carol", 2_000),
        (3, "dave", 2_000),
        (4, "bob", 1_000),
    ]
    rewards = {r["tier"]: r for r in report["rewards"]}
    assert [r["tier"] for r in report["rewards"]] == ["champion", "elite"]
    assert (rewards["champion"]["players"], rewards["champion"]["damage"]) == (1, 5_000)
    assert (rewards["elite"]["players"], rewards["elite"]["damage"], rewards["elite"]["worst_rank"]) == (
        3,
        5_000,
        4,
    )
    assert rewards["elite"]["claimed"] == 0
    assert RewardGrant.objects.filter(boss=boss, fight=1).count() == 4


def test_a_running_fight_ranks_players_from_the_archive(make_boss, make_session):
    boss = make_boss(max_hp=100_000)
    boss_go_live(boss=boss)
    s = make_session("eu-1")
    hit(boss, s, 1, {"p1": 300, "p2": 700})
    boss_tick(boss_id=boss.pk, force=True)
    hit(boss, s, 2, {"p1": 900})
    boss_tick(boss_id=boss.pk, force=True)
    assert event_log_archive(boss=boss) == 3
    report = fight_report(boss=boss, fight=1, top=1)
    assert report["running"] is True and report["summary"]["final_status"] == "live"
    assert report["leaderboard"] == {
        "source": "archive",
        "rows": [{"rank": 1, "name": "p1", "damage": 1_200}],
        "players": 2,
    }
    assert report["rewards"] == [] and report["marks"]["phases"] == []
    assert report["summary"]["total_damage"] == 1_900


def test_unknown_fights_are_refused_with_a_stable_code(make_boss, make_session):
    boss = make_boss()
    with pytest.raises(UnknownFight) as err:
        fight_report(boss=boss, fight=1)  # a draft: nothing archived
    assert err.value.code == "unknown_boss" and "no archived event" in str(err.value)
    boss_go_live(boss=boss)
    event_log_archive(boss=boss)
    assert fight_report(boss=boss, fight=1)["summary"]["events"] == 1
    for fight in (0, 2, -1):
        with pytest.raises(UnknownFight):
            fight_report(boss=boss, fight=fight)
    # a reset starts fight 2; fight 1 keeps its report, fight 2 has none until archived
    boss_end(boss=boss)
    boss_reset(boss=boss)
    boss.refresh_from_db()
    assert boss.fight == 2 and fight_report(boss=boss, fight=1)["fight"] == 1
    with pytest.raises(UnknownFight):
        fight_report(boss=boss, fight=2)


# --- a one-hour fight at 10 ticks/s ------------------------------------------------------------

T0_MS = 1_700_000_000_000
EVENTS = 36_000
SHARDS = 12
PLAYERS = 300
DAMAGE = 100
PAUSE_AT, RESUME_AT = 18_000, 18_001


def synthetic_fight(boss) -> dict:
    """Bulk-create an archived fight: 36,000 events 100 ms apart, 12 shards, a pause."""
    max_hp = boss.max_hp
    hp, rows, first_below = max_hp, [], {}
    for v in range(1, EVENTS + 1):
        ts = T0_MS + (v - 1) * 100
        if v == 1:
            rows.append(
                BossEvent(boss=boss, fight=1, version=v, kind="status", status="live", hp=hp, ts_ms=ts)
            )
            continue
        if v in (PAUSE_AT, RESUME_AT):
            status = "paused" if v == PAUSE_AT else "live"
            rows.append(
                BossEvent(boss=boss, fight=1, version=v, kind="status", status=status, hp=hp, ts_ms=ts)
            )
            continue
        shard = f"shard-{v % SHARDS:02d}"
        # every 1,000th tick part of it is a fair crash recovery: the same shard's damage
        if v % 1_000 == 0:
            deltas = {session_id(shard, 3): 60, recovered_field(session_id(shard, 2)): 40}
        else:
            deltas = {session_id(shard, 3): DAMAGE}
        hp -= DAMAGE
        for pct in (75, 50, 25):
            if hp <= max_hp * pct // 100:
                first_below.setdefault(pct, v)
        rows.append(
            BossEvent(
                boss=boss,
                fight=1,
                version=v,
                kind="tick",
                status="live",
                hp=hp,
                applied=DAMAGE,
                deltas=deltas,
                players={f"p{v % PLAYERS:03d}": DAMAGE},
                ts_ms=ts,
            )
        )
    BossEvent.objects.bulk_create(rows, batch_size=2_000)
    return {"final_hp": hp, "first_below": first_below}


def test_a_one_hour_fight_stays_within_the_bounds(make_boss, django_assert_max_num_queries):
    boss = make_boss(max_hp=4_000_000, status="expired")
    fight = synthetic_fight(boss)
    ticks = EVENTS - 3

    with django_assert_max_num_queries(12):
        report = fight_report(boss=boss, fight=1)

    s = report["summary"]
    assert (s["events"], s["ticks"], s["total_damage"]) == (EVENTS, ticks, ticks * DAMAGE)
    assert s["duration_s"] == pytest.approx((EVENTS - 1) / 10)
    assert s["peak_dps"] == 10 * DAMAGE  # ten ticks in every whole second
    assert (s["players"], s["shards"], s["final_hp"]) == (PLAYERS, SHARDS, fight["final_hp"])

    points = report["hp"]["points"]
    assert 200 <= len(points) <= HP_POINTS_MAX
    versions = [p["version"] for p in points]
    assert versions == sorted(versions)
    assert [p["hp"] for p in points] == sorted((p["hp"] for p in points), reverse=True)
    # the extremes and every mark are kept
    assert (points[0]["version"], points[0]["hp"]) == (1, 4_000_000)
    assert (points[-1]["version"], points[-1]["hp"]) == (EVENTS, fight["final_hp"])
    phases = report["marks"]["phases"]
    assert [m["name"] for m in phases] == ["Enraged", "Frenzy", "Last stand"]
    assert [m["version"] for m in phases] == [fight["first_below"][pct] for pct in (75, 50, 25)]
    statuses = [(m["status"], m["version"]) for m in report["marks"]["statuses"]]
    assert statuses == [("live", 1), ("paused", PAUSE_AT), ("live", RESUME_AT)]
    assert {m["version"] for m in phases} | {v for _, v in statuses} <= set(versions)
    by_version = {p["version"]: p for p in points}
    assert all(by_version[m["version"]]["hp"] == m["hp"] for m in phases)

    shards = report["shards"]
    assert len(shards["buckets"]) <= SHARD_BUCKETS_MAX and shards["bucket_ms"] >= 1_000
    assert shards["series"][-1] == OTHER_SERIES and len(shards["series"]) == SHARD_SERIES_MAX + 1
    assert all(len(b["damage"]) == len(shards["series"]) for b in shards["buckets"])
    assert sum(sum(b["damage"]) for b in shards["buckets"]) == ticks * DAMAGE
    assert sum(b["applied"] for b in shards["buckets"]) == ticks * DAMAGE
    assert sum(b["ticks"] for b in shards["buckets"]) == ticks
    # recovered fields count for their shard: every shard is credited exactly its ticks
    expected = {f"shard-{k:02d}": 0 for k in range(SHARDS)}
    for v in range(2, EVENTS + 1):
        if v not in (PAUSE_AT, RESUME_AT):
            expected[f"shard-{v % SHARDS:02d}"] += DAMAGE
    assert {r["shard"]: r["damage"] for r in shards["totals"]} == expected
    assert [b["hp_end"] for b in shards["buckets"]][-1] == fight["final_hp"]

    board = report["leaderboard"]
    assert board["source"] == "archive" and board["players"] == PLAYERS and len(board["rows"]) == 10
    assert board["rows"][0]["damage"] >= board["rows"][-1]["damage"]
    assert report["running"] is False and report["marks"]["sagas"] == []
