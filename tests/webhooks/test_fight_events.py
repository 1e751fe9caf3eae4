"""A whole fight driven through the services and the tick (real Redis), delivered by a real
worker: every event arrives once, signed; a slow endpoint never holds up the tick."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from bosses.models import SagaRun
from bosses.sagas.crash import session_fence
from bosses.sagas.victory import boss_victory_run
from bosses.services import boss_end, boss_go_live, boss_tick
from bosses.signals import (
    CRASH_SETTLED,
    DEFEATED,
    EXPIRED,
    FIGHT_EVENTS,
    PHASE,
    REWARDS_GRANTED,
    SPAWN_UPCOMING,
    WENT_LIVE,
)
from tests.support.authority import delta_ingest, heartbeat_record
from tests.support.waiting import wait_until
from webhooks.models import DeliveryStatus, WebhookDelivery
from worldboss_sdk import webhook_verify

pytestmark = [pytest.mark.process]


def settle(n: int) -> None:
    """Wait until ``n`` deliveries are delivered. SQLite refuses a transaction that reads and
    then writes while another process writes ("database is locked", at once: no busy wait),
    so on SQLite the test's next saga step waits for the worker's writes; PostgreSQL does not
    need it, and it keeps the order of the steps the same on both."""
    wait_until(
        lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() >= n,
        timeout_s=30,
        what=f"{n} deliveries delivered",
    )


def delivered_events() -> list[str]:
    return sorted(
        WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).values_list("event", flat=True)
    )


def test_the_events_of_a_whole_fight_arrive_once_each(
    receiver, make_endpoint, make_boss, make_session, start_worker
):
    # the worker runs the victory saga (enqueued by the death tick) and the deliveries
    start_worker(queues="sagas,webhooks")
    endpoint = make_endpoint()
    boss = make_boss(max_hp=1_000, crash_policy="fair", heartbeat_interval_ms=100, heartbeat_timeout_ms=300)
    other_boss_endpoint = make_endpoint(name="another boss only", boss=make_boss())

    boss_go_live(boss=boss)  # boss.went_live
    settle(1)
    s1, s2 = make_session(), make_session()
    delta_ingest(
        boss_id=boss.pk, shard_key=s1.shard_key, epoch=s1.epoch, seq=1, amount=300, breakdown={"ana": 300}
    )
    boss_tick(boss_id=boss.pk, force=True)  # 70 %: boss.phase (Enraged)
    settle(2)
    heartbeat_record(boss_id=boss.pk, shard_key=s2.shard_key, epoch=s2.epoch, pending=40)
    session_fence(boss=boss, shard_key=s2.shard_key, epoch=s2.epoch)  # crash.settled (fair: 40)
    settle(3)
    boss_tick(boss_id=boss.pk, force=True)  # the settled 40 applied: 66 %
    for seq, amount in ((2, 200), (3, 300)):  # 46 %: Frenzy, 16 %: Last stand
        delta_ingest(
            boss_id=boss.pk,
            shard_key=s1.shard_key,
            epoch=s1.epoch,
            seq=seq,
            amount=amount,
            breakdown={"bo": amount},
        )
        boss_tick(boss_id=boss.pk, force=True)
        settle(seq + 2)
    delta_ingest(
        boss_id=boss.pk, shard_key=s1.shard_key, epoch=s1.epoch, seq=4, amount=200, breakdown={"ana": 200}
    )
    assert boss_tick(boss_id=boss.pk, force=True).defeated  # the victory saga, in the worker
    wait_until(lambda: SagaRun.objects.filter(kind="victory", status="completed").exists(), timeout_s=30)
    settle(7)

    ending = make_boss()
    boss_go_live(boss=ending)
    settle(8)
    boss_end(boss=ending)  # boss.expired (of another boss: the endpoint takes every boss)

    expected = sorted(
        [WENT_LIVE, WENT_LIVE, PHASE, PHASE, PHASE, CRASH_SETTLED, DEFEATED, REWARDS_GRANTED, EXPIRED]
    )
    wait_until(lambda: delivered_events() == expected, timeout_s=30, what="every event delivered")
    assert sorted(receiver.events()) == expected
    # every fight event but a schedule's notice (tests/webhooks/test_spawn_upcoming.py)
    assert set(expected) == set(FIGHT_EVENTS) - {SPAWN_UPCOMING}

    bodies = [
        webhook_verify(
            secret=endpoint.secret,
            body=r.body,
            timestamp=r.headers["Webhook-Timestamp"],
            signature=r.headers["Webhook-Signature"],
        )
        for r in receiver.requests
    ]
    by_event = {}
    for body in bodies:
        by_event.setdefault(body["event"], []).append(body)
    assert [b["data"]["phase"] for b in sorted(by_event[PHASE], key=lambda b: b["data"]["phase_index"])] == [
        "Enraged",
        "Frenzy",
        "Last stand",
    ]
    assert by_event[CRASH_SETTLED][0]["data"]["amount"] == 40
    assert by_event[CRASH_SETTLED][0]["data"]["outcome"] == "recovered"
    assert by_event[REWARDS_GRANTED][0]["data"] == {"grants": 2}
    assert by_event[DEFEATED][0]["boss"] == {"id": boss.pk, "slug": boss.slug}
    assert by_event[EXPIRED][0]["boss"]["slug"] == ending.slug
    assert (
        not WebhookDelivery.objects.filter(endpoint=other_boss_endpoint).exclude(event=WENT_LIVE).exists()
    )  # its boss only went live (no phase, no death)
    assert (
        list(WebhookDelivery.objects.filter(endpoint=other_boss_endpoint).values_list("event", flat=True))
        == []
    )

    # The saga run again (a resume) sends its events again, with the same keys: nothing new.
    count = receiver.count()
    boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    boss_tick(boss_id=boss.pk, force=True)
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == len(expected)
    assert receiver.count() == count


def test_a_slow_endpoint_never_holds_up_the_tick(
    receiver, make_endpoint, make_boss, make_session, webhook_worker
):
    """The endpoint holds the phase event's request (up to 10 s) until the test lets it go, and
    the test lets it go only after the tick returned: a tick that waited on it could not return
    first, and would see ``answered`` set."""
    make_endpoint(events=[PHASE], timeout_ms=15_000)
    receiver.plan(("gate", 200))
    boss = make_boss(max_hp=1_000)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=300)

    result = {}

    def tick() -> None:
        try:
            result["out"] = boss_tick(boss_id=boss.pk, force=True)
        finally:
            connection.close()

    ticker = threading.Thread(target=tick)
    ticker.start()
    ticker.join(timeout=10)  # the receiver's own hold: a tick waiting on it would still run
    assert not ticker.is_alive() and result["out"].phase == 1
    assert receiver.answered == 0
    wait_until(lambda: receiver.count() == 1, what="the worker's POST reached the endpoint")
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING  # still held
    receiver.open()
    wait_until(lambda: WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED)
