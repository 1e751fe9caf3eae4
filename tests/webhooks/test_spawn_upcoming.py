"""``boss.spawn_upcoming``: a recurring schedule's next spawn is announced once, its
``notice_minutes`` before, to a real receiver through a real worker (docs/liveops.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bosses.sagas.spawn import spawns_apply
from bosses.services import spawn_schedule_save
from bosses.signals import SPAWN_UPCOMING
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process]

AT = datetime(2027, 6, 5, 18, 0, tzinfo=UTC)  # 20:00 in Paris (summer time)


def test_the_next_spawn_is_announced_once_before_it(receiver, make_endpoint, make_boss, webhook_worker):
    make_endpoint(events=[SPAWN_UPCOMING])
    boss = make_boss(slug="evening-wyrm")
    schedule = spawn_schedule_save(
        schedule=None,
        fields={
            "boss": boss,
            "timezone": "Europe/Paris",
            "rule": "FREQ=WEEKLY;BYDAY=SA",
            "start_date": date(2027, 1, 2),
            "start_time": time(20),
            "duration_s": 1800,
            "notice_minutes": 15,
        },
    )
    spawns_apply(now=AT - timedelta(minutes=16))  # too early: nothing
    for minutes in (14, 10, 1):  # every pass inside the notice window, the same occurrence
        spawns_apply(now=AT - timedelta(minutes=minutes))
    wait_until(lambda: receiver.count() >= 1, what="the notice delivered")
    spawns_apply(now=AT + timedelta(seconds=1))  # the spawn itself
    assert boss.spawn_occurrences.get().fight == 1
    body = receiver.requests[0].json()
    assert receiver.events() == [SPAWN_UPCOMING]
    assert body["data"] == {
        "at": "2027-06-05T18:00:00+00:00",
        "ends_at": "2027-06-05T18:30:00+00:00",
        "schedule": schedule.pk,
        "timezone": "Europe/Paris",
        "notice_minutes": 15,
    }
    assert (body["boss"]["slug"], body["fight"]) == ("evening-wyrm", 1)
    spawns_apply(now=AT + timedelta(days=7) - timedelta(minutes=5))  # next Saturday's
    wait_until(lambda: receiver.count() >= 2, what="the next week's notice")
    assert receiver.requests[1].json()["data"]["at"] == "2027-06-12T18:00:00+00:00"
    assert receiver.requests[1].json()["fight"] == 2
