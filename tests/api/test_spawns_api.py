"""Recurring spawns through the API and the public pages of a live server: schedules, the
next spawns, ``next_spawn_at`` in the boss and its public state, the ICS feed, occurrences."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def _public(api, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"{api.base}{path}", timeout=30) as reply:
        return reply.status, reply.headers["Content-Type"], reply.read().decode()


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_schedules_next_spawns_state_and_the_ics_feed(api, key, make_boss):
    from bosses.models import BossEncounter
    from bosses.sagas.spawn import spawns_apply
    from bosses.services import boss_end
    from core.messages import StateApiBody
    from tests.support.frame_schema import check

    boss = make_boss(slug="evening-wyrm", name="Evening Wyrm")
    today = datetime.now(UTC).date()
    body = {
        "rule": "FREQ=DAILY",
        "start_date": (today - timedelta(days=2)).isoformat(),
        "start_time": "20:00:00",
        "timezone": "Europe/Paris",
        "duration_s": 1800,
        "blackout_dates": [(today + timedelta(days=3)).isoformat()],
    }
    bad = api.post("/bosses/evening-wyrm/schedules", key=key, body={**body, "rule": "FREQ=SOMETIMES"})
    assert bad.status == 422 and bad.body["error"]["field"] == "rule", bad
    created = api.post("/bosses/evening-wyrm/schedules", key=key, body=body)
    assert created.status == 201, created
    schedule = created.body
    assert schedule["next_spawn_at"] is not None

    spawns = api.get("/bosses/evening-wyrm/spawns?days=14", key=key).body
    assert len(spawns["items"]) in (12, 13, 14)  # 14 evenings less the blackout (and today's if past)
    first = spawns["items"][0]
    at = _instant(first["at"])
    assert at == _instant(schedule["next_spawn_at"])
    assert _instant(first["ends_at"]) == at + timedelta(minutes=30)
    blackout = today + timedelta(days=3)
    assert all(_instant(s["at"]).date() != blackout for s in spawns["items"])
    assert api.get("/spawns", key=key).body["items"] == spawns["items"]
    assert _instant(api.get("/bosses/evening-wyrm", key=key).body["next_spawn_at"]) == at

    # the public state a client reads ("next spawn in 2 h"), checked against its type
    boss_row = BossEncounter.objects.get(pk=boss.pk)
    spawns_apply(now=at + timedelta(seconds=1))  # the first evening, by an injected clock
    boss_row.refresh_from_db()
    assert boss_row.status == "live"
    status, _, text = _public(api, "/api/bosses/evening-wyrm/state")
    state = json.loads(text)
    check(StateApiBody, state)
    assert state["next_spawn_at"] is not None and state["status"] == "live"

    status, content_type, ics = _public(api, "/bosses/evening-wyrm/spawns.ics")
    assert status == 200 and content_type.startswith("text/calendar")
    assert ics.startswith("BEGIN:VCALENDAR\r\n") and ics.endswith("END:VCALENDAR\r\n")
    assert ics.count("BEGIN:VEVENT") >= 50  # 60 days ahead, less the blackout
    assert f"DTSTART:{_instant(spawns['items'][1]['at']).strftime('%Y%m%dT%H%M%SZ')}" in ics
    assert "SUMMARY:Evening Wyrm spawns" in ics

    occurrences = api.get(f"/schedules/{schedule['id']}/occurrences", key=key).body
    assert [(o["status"], o["fight"]) for o in occurrences["items"]] == [("spawned", 1)]
    boss_end(boss=boss_row)
    off = api.call("PATCH", f"/schedules/{schedule['id']}", key=key, body={"enabled": False})
    assert off.status == 200 and off.body["next_spawn_at"] is None
    assert api.get("/bosses/evening-wyrm/spawns", key=key).body["items"] == []
    assert api.call("PATCH", "/schedules/999999", key=key, body={"enabled": True}).code == "not_found"
