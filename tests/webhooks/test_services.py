"""The delivery services in this process (no worker): on-commit creation, the claim, backoff,
the sweep, and what an attempt records for each kind of answer from a real HTTP receiver."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from bosses.signals import DEFEATED, PHASE, fight_event_send
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import (
    deliveries_create_for_event,
    deliveries_sweep,
    delivery_attempt,
    delivery_backoff_s,
)


def fire(key: str = "boss.defeated:1:1", event: str = DEFEATED) -> None:
    fight_event_send(boss_id=1, slug="wyrm", fight=1, event=event, key=key, payload={"version": 3})


def test_an_event_sent_in_a_transaction_that_rolls_back_delivers_nothing(make_endpoint):
    make_endpoint()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        fire()
        raise Boom
    assert not WebhookDelivery.objects.exists()
    with transaction.atomic():
        fire()
        assert not WebhookDelivery.objects.exists()  # only once the step commits
    assert WebhookDelivery.objects.count() == 1


def test_inactive_endpoints_and_other_events_get_no_row(make_endpoint):
    make_endpoint(active=False)
    make_endpoint(name="phases", events=[PHASE])
    fire()
    assert not WebhookDelivery.objects.exists()


def test_an_attempt_claims_once_and_records_the_answer(make_endpoint, receiver):
    make_endpoint()
    fire()
    delivery = WebhookDelivery.objects.get()
    assert delivery_attempt(delivery_id=delivery.pk).outcome == "delivered"
    assert delivery_attempt(delivery_id=delivery.pk).outcome == "skipped"
    assert receiver.count() == 1


def test_a_retry_is_not_due_before_its_backoff(make_endpoint, receiver):
    make_endpoint()
    receiver.plan(500)
    fire()
    delivery = WebhookDelivery.objects.get()
    first = delivery_attempt(delivery_id=delivery.pk, rng=random.Random(1))
    assert first.outcome == "retry" and first.retry_in_s > 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.PENDING, 1, 500)
    assert delivery.next_attempt_at > timezone.now()
    assert delivery_attempt(delivery_id=delivery.pk).outcome == "not_due"
    assert receiver.count() == 1


@pytest.mark.parametrize("status", [302, 401, 410])
def test_redirects_and_refusals_are_not_retried(make_endpoint, receiver, status):
    make_endpoint()
    receiver.plan(status)
    fire()
    result = delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    assert result.outcome == "failed"
    assert WebhookDelivery.objects.get().last_status_code == status


def test_a_deactivated_endpoint_fails_its_pending_deliveries(make_endpoint, receiver):
    endpoint = make_endpoint()
    fire()
    endpoint.active = False
    endpoint.save()
    assert delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk).outcome == "failed"
    assert WebhookDelivery.objects.get().last_error == "endpoint inactive"
    assert receiver.count() == 0


def test_the_sweep_takes_only_overdue_pending_deliveries(make_endpoint, settings):
    settings.WEBHOOK_SWEEP_GRACE_MS = 60_000
    make_endpoint()
    for n in range(3):
        fire(key=f"boss.defeated:1:{n}")
    stuck, recent, done = WebhookDelivery.objects.order_by("pk")
    WebhookDelivery.objects.filter(pk=stuck.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    WebhookDelivery.objects.filter(pk=done.pk).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    assert deliveries_sweep() == 1
    stuck.refresh_from_db()
    assert abs((stuck.next_attempt_at - timezone.now()).total_seconds()) < 60  # moved to now
    assert deliveries_sweep() == 0  # not again within the grace period


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(settings):
    settings.WEBHOOK_BACKOFF_BASE_MS = 2_000
    settings.WEBHOOK_BACKOFF_MAX_MS = 900_000
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (9, 512), (10, 900), (30, 900)]:
        waits = [delivery_backoff_s(attempt=attempt, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered


def test_concurrent_senders_of_one_event_create_one_row(make_endpoint):
    """Two processes' saga runs (here: threads, each with its own connection) send the same
    key at once: the unique (endpoint, event key) keeps one row."""
    make_endpoint()
    make_endpoint(name="second backend")
    start = threading.Barrier(4)
    created = []

    def send() -> None:
        try:
            start.wait()
            created.append(
                deliveries_create_for_event(
                    boss_id=1, slug="wyrm", fight=1, event=DEFEATED, key="boss.defeated:1:1", payload={}
                )
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(created) == 4
    assert WebhookDelivery.objects.count() == 2  # one per endpoint
    assert len({i for ids in created for i in ids}) == 2
