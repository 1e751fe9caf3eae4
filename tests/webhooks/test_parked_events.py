"""A fight event raised while the database is unreachable is parked in Redis, not lost.

The tick runs on Redis alone through a database outage (docs/faults.md) and raises
``boss.phase`` there; its deliveries cannot be written, so the event waits in
``core.keys.WEBHOOK_EVENTS_PARKED`` until the webhook sweep creates them (once each).
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from bosses.services import boss_go_live, boss_tick
from bosses.signals import PHASE
from core import keys
from core.redis import get_redis
from tests.support.authority import delta_ingest
from tests.support.database import database_unreachable
from webhooks.models import WebhookDelivery
from webhooks.services import parked_events_replay

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_phase_event_during_a_database_outage_is_delivered_after_it(make_endpoint, make_boss, make_session):
    endpoint = make_endpoint(events=[PHASE])
    boss = make_boss(max_hp=1_000)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=300)
    r = get_redis()
    with database_unreachable():
        out = boss_tick(boss_id=boss.pk, force=True)  # 70 %: Enraged, on Redis alone
        assert out.code == "applied" and out.phase != out.old_phase
    assert r.llen(keys.WEBHOOK_EVENTS_PARKED) == 1
    assert not WebhookDelivery.objects.exists()

    assert parked_events_replay() == 1
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.endpoint_id, delivery.event, delivery.event_key) == (
        endpoint.pk,
        PHASE,
        f"{PHASE}:{boss.pk}:1:1",
    )
    assert r.llen(keys.WEBHOOK_EVENTS_PARKED) == 0 and parked_events_replay() == 0


def test_a_replay_that_fails_keeps_the_event_and_a_repeat_creates_nothing(
    make_endpoint, make_boss, make_session
):
    make_endpoint(events=[PHASE])
    boss = make_boss(max_hp=1_000)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=300)
    r = get_redis()
    with database_unreachable():
        boss_tick(boss_id=boss.pk, force=True)
        with pytest.raises(OperationalError):
            parked_events_replay()  # still down: nothing leaves the list
    assert r.llen(keys.WEBHOOK_EVENTS_PARKED) == 1
    parked = r.lindex(keys.WEBHOOK_EVENTS_PARKED, 0)
    assert parked_events_replay() == 1
    r.rpush(keys.WEBHOOK_EVENTS_PARKED, parked)  # the same event parked twice (a re-run tick)
    assert parked_events_replay() == 1 and WebhookDelivery.objects.count() == 1
