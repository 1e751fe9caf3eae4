"""A whole fight driven through the API on a live server, a real Celery worker and beat:
draft, go live, live leaderboard, defeat, results, leaderboard pages, timeline, the reward
feed, and claims retried and raced from threads."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

PLAYERS = 25
MAX_HP = 20_000


def player_id(i: int) -> str:
    return f"p{i:02d}"


def test_a_fight_through_the_api(api, key, make_session, celery_stack):
    from tests.support.authority import delta_ingest

    draft = {"name": "API Golem", "slug": "api-golem", "max_hp": MAX_HP, "phases": "75:Enraged, 50:Frenzy"}
    created = api.post("/bosses", key=key, body=draft)
    assert created.status == 201 and created.body["status"] == "draft", created
    patched = api.call("PATCH", "/bosses/api-golem", key=key, body={"name": "API Golem II"})
    assert patched.status == 200 and patched.body["name"] == "API Golem II"
    live = api.post("/bosses/api-golem/go-live", key=key)
    assert live.status == 200 and live.body["status"] == "live", live
    assert live.body["live"]["hp"] == MAX_HP
    assert api.call("PATCH", "/bosses/api-golem", key=key, body={"max_hp": 5}).code == "invalid_transition"

    # pause and resume refuse what does not apply and apply what does
    assert api.post("/bosses/api-golem/resume", key=key).code == "invalid_transition"
    assert api.post("/bosses/api-golem/pause", key=key).body["status"] == "paused"
    assert api.post("/bosses/api-golem/resume", key=key).body["status"] == "live"

    from bosses.models import BossEncounter

    boss = BossEncounter.objects.get(slug="api-golem")
    session = make_session("api-gs")
    first = {player_id(i): 100 + i for i in range(1, PLAYERS + 1)}  # p25 most, p01 least
    delta_ingest(
        boss_id=boss.pk,
        shard_key=session.shard_key,
        epoch=session.epoch,
        seq=1,
        amount=sum(first.values()),
        breakdown=first,
    )
    dealt = sum(first.values())
    wait_until(
        lambda: api.get("/bosses/api-golem/fights/1/results", key=key).body["hp"] == MAX_HP - dealt,
        what="the first delta ticked",
    )
    board = api.get("/bosses/api-golem/fights/1/leaderboard?limit=10", key=key).body
    assert board["source"] == "live" and board["count"] == PLAYERS
    assert [r["player"] for r in board["items"]] == [player_id(i) for i in range(25, 15, -1)]
    me = api.get("/bosses/api-golem/fights/1/players/p20", key=key).body
    assert (me["rank"], me["damage"], me["source"]) == (6, 120, "live")

    # the killing blow, mostly p01's
    finisher = {player_id(1): MAX_HP}
    delta_ingest(
        boss_id=boss.pk,
        shard_key=session.shard_key,
        epoch=session.epoch,
        seq=2,
        amount=MAX_HP,
        breakdown=finisher,
    )
    results = wait_until(
        lambda: (
            (r := api.get("/bosses/api-golem/fights/1/results", key=key).body)["victory"]
            and r["victory"]["status"] == "completed"
            and r
        ),
        timeout_s=30,
        what="the victory saga completed",
    )
    assert results["status"] == "defeated" and results["hp"] == 0 and results["final"]
    assert results["defeated_at"] is not None and results["version"] >= 3
    assert results["totals"]["players"] == PLAYERS
    assert results["totals"]["player_damage"] == dealt + MAX_HP  # accepted per player, overkill included
    assert results["totals"]["applied"] == MAX_HP

    pages = []
    for offset in (0, 10, 20, 30):
        page = api.get(f"/bosses/api-golem/fights/1/leaderboard?limit=10&offset={offset}", key=key).body
        assert page["source"] == "final" and page["count"] == PLAYERS
        pages.append(page["items"])
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    ranked = [r for p in pages for r in p]
    assert [r["rank"] for r in ranked] == list(range(1, PLAYERS + 1))
    assert ranked[0] == {"rank": 1, "player": "p01", "damage": MAX_HP + 101}
    assert ranked[1]["player"] == "p25"
    me = api.get("/bosses/api-golem/fights/1/players/p01", key=key).body
    assert (me["rank"], me["source"], me["reward"]["tier"]) == (1, "final", "champion")
    assert api.get("/bosses/api-golem/fights/1/players/nobody", key=key).code == "not_found"
    assert api.get("/bosses/api-golem/fights/2/results", key=key).code == "not_found"

    timeline = api.get("/bosses/api-golem/fights/1/timeline", key=key).body
    kinds = [(i["kind"], i.get("status") or i.get("phase")) for i in timeline["items"]]
    assert kinds == [
        ("status", "live"),
        ("status", "paused"),
        ("status", "live"),
        ("phase", "Enraged"),
        ("phase", "Frenzy"),
        ("status", "defeated"),
    ], kinds
    versions = [i["version"] for i in timeline["items"]]
    assert versions == sorted(versions)
    second = api.get("/bosses/api-golem/fights/1/timeline?offset=4&limit=1", key=key).body
    assert second["count"] == 6 and second["items"] == [timeline["items"][4]]

    # the reward feed, by cursor
    seen, after = [], 0
    while True:
        page = api.get(f"/rewards?after={after}&limit=10&boss=api-golem", key=key).body
        if not page["items"]:
            assert page["next"] == after
            break
        seen += page["items"]
        after = page["next"]
        assert after == page["items"][-1]["id"]
    assert len(seen) == PLAYERS and len({g["player"] for g in seen}) == PLAYERS
    assert Counter(g["tier"] for g in seen) == {"champion": 1, "elite": 9, "participant": 15}
    only = api.get("/rewards?player=p07&fight=1", key=key).body["items"]
    assert [g["player"] for g in only] == ["p07"]

    # a claim, retried: the same answer; another claim id: refused
    grant = seen[0]
    claim = api.post(f"/rewards/{grant['id']}/claim", key=key, body={"claim_id": "tx-1"})
    assert claim.status == 200 and claim.body["claim_id"] == "tx-1" and claim.body["claimed_at"]
    again = api.post(f"/rewards/{grant['id']}/claim", key=key, body={"claim_id": "tx-1"})
    assert (again.status, again.body) == (200, claim.body)
    other = api.post(f"/rewards/{grant['id']}/claim", key=key, body={"claim_id": "tx-2"})
    assert (other.status, other.code) == (409, "already_claimed")

    # racing claims from threads: exactly one claim id wins, every other gets 409
    race_grant = seen[1]["id"]
    replies: dict[str, object] = {}
    start = threading.Barrier(8)

    def claim_as(claim_id: str) -> None:
        start.wait()
        replies[claim_id] = api.post(f"/rewards/{race_grant}/claim", key=key, body={"claim_id": claim_id})

    threads = [threading.Thread(target=claim_as, args=(f"race-{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [c for c, r in replies.items() if r.status == 200]
    assert len(replies) == 8 and len(winners) == 1, {c: r.status for c, r in replies.items()}
    assert all(r.code == "already_claimed" for c, r in replies.items() if c not in winners)
    from bosses.models import RewardGrant

    row = RewardGrant.objects.get(pk=race_grant)
    assert row.claim_id == winners[0] and replies[winners[0]].body["claim_id"] == winners[0]

    # the same claim id sent many times at once: one claim, the same answer for all
    same_grant = seen[2]["id"]
    same: list = []
    start_same = threading.Barrier(6)

    def claim_same() -> None:
        start_same.wait()
        same.append(api.post(f"/rewards/{same_grant}/claim", key=key, body={"claim_id": "one"}))

    threads = [threading.Thread(target=claim_same) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(same) == 6 and all(r.status == 200 for r in same), [r.status for r in same]
    assert len({r.body["claimed_at"] for r in same}) == 1

    # a won fight can no longer be driven, nor its schedule or configuration changed
    assert api.post("/bosses/api-golem/end", key=key).code == "invalid_transition"
    later = {"starts_at": None, "ends_at": "2099-01-01T00:00:00Z"}
    assert api.call("PUT", "/bosses/api-golem/schedule", key=key, body=later).code == "invalid_transition"
    assert api.call("PATCH", "/bosses/api-golem", key=key, body={"max_damage": 99}).code == (
        "invalid_transition"
    )


def test_schedule_goes_live_and_expires_through_the_beat(api, key, celery_stack):
    from datetime import UTC, datetime, timedelta

    assert api.post("/bosses", key=key, body={"name": "Timed", "slug": "timed", "max_hp": 1000}).status == 201
    now = datetime.now(UTC)
    bad = api.call(
        "PUT",
        "/bosses/timed/schedule",
        key=key,
        body={"starts_at": now.isoformat(), "ends_at": (now - timedelta(seconds=5)).isoformat()},
    )
    assert (bad.status, bad.code, bad.body["error"].get("field")) == (422, "invalid", "ends_at")
    assert api.get("/bosses/timed", key=key).body["starts_at"] is None  # nothing written
    ends = now + timedelta(seconds=3)
    ok = api.call(
        "PUT",
        "/bosses/timed/schedule",
        key=key,
        body={"starts_at": now.isoformat(), "ends_at": ends.isoformat()},
    )
    assert ok.status == 200 and ok.body["ends_at"] is not None
    wait_until(lambda: api.get("/bosses/timed", key=key).body["status"] == "live", timeout_s=20, what="live")
    wait_until(
        lambda: api.get("/bosses/timed", key=key).body["status"] == "expired", timeout_s=20, what="expired"
    )
    results = api.get("/bosses/timed/fights/1/results", key=key).body
    assert results["status"] == "expired" and results["final"] and results["hp"] == 1000
