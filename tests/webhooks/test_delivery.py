"""Deliveries through a real Celery worker to a real HTTP receiver: signed, retried, once per event."""

from __future__ import annotations

import re

import pytest

from bosses.signals import DEFEATED, PHASE, fight_event_send
from tests.support import processes
from tests.support.waiting import wait_until
from tests.webhooks.conftest import WORKER_ENV
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import delivery_body
from worldboss_sdk import webhook_verify

pytestmark = [pytest.mark.process]


def fire(boss_id: int = 1, key: str = "boss.defeated:1:1", event: str = DEFEATED, **payload) -> None:
    fight_event_send(
        boss_id=boss_id, slug="wyrm", fight=1, event=event, key=key, payload=payload or {"version": 7}
    )


def only_delivery() -> WebhookDelivery:
    [delivery] = WebhookDelivery.objects.all()
    return delivery


def settled(status: str = DeliveryStatus.DELIVERED):
    def check():
        d = WebhookDelivery.objects.first()
        return d if d is not None and d.status == status else None

    check.__name__ = f"a delivery {status}"
    return check


def verify(request, secret: str) -> dict:
    return webhook_verify(
        secret=secret,
        body=request.body,
        timestamp=request.headers["Webhook-Timestamp"],
        signature=request.headers["Webhook-Signature"],
    )


def test_a_delivery_is_signed_and_verifies_with_the_sdk(receiver, make_endpoint, webhook_worker):
    endpoint = make_endpoint()
    fire(key="boss.defeated:1:1", version=7)
    delivery = wait_until(settled())
    [request] = receiver.requests
    body = verify(request, endpoint.secret)
    assert body == delivery.payload
    assert body["event"] == DEFEATED and body["key"] == "boss.defeated:1:1"
    assert body["boss"] == {"id": 1, "slug": "wyrm"} and body["data"] == {"version": 7}
    assert request.body == delivery_body(delivery)
    assert request.headers["Webhook-Id"] == delivery.idempotency_key == body["id"]
    assert request.headers["Webhook-Event"] == DEFEATED
    assert re.fullmatch(r"v1=[0-9a-f]{64}", request.headers["Webhook-Signature"])
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    assert delivery.delivered_at is not None and delivery.response_ms is not None
    # another endpoint's secret does not verify it
    with pytest.raises(ValueError, match="no signature matches"):
        verify(request, "whsec_someone-else")


@pytest.mark.parametrize("failure", [500, 503, 429])
def test_retryable_statuses_are_retried_with_backoff_then_delivered(
    receiver, make_endpoint, webhook_worker, failure
):
    endpoint = make_endpoint()
    receiver.plan(failure, failure, 200)
    fire()
    delivery = wait_until(settled())
    assert delivery.attempts == 3 and delivery.last_status_code == 200
    requests = receiver.of_id(delivery.idempotency_key)
    assert len(requests) == 3 == receiver.count()
    # every attempt carries the same id and body, each signed for its own timestamp
    assert {r.body for r in requests} == {delivery_body(delivery)}
    for r in requests:
        verify(r, endpoint.secret)


def test_a_timeout_is_retried_then_delivered(receiver, make_endpoint, webhook_worker):
    make_endpoint(timeout_ms=300)
    receiver.plan(("sleep", 1.5, 200), 200)  # answers long after the endpoint's timeout
    fire()
    delivery = wait_until(settled())
    assert delivery.attempts == 2
    assert len(receiver.of_id(delivery.idempotency_key)) == 2


def test_a_4xx_fails_at_once_without_retry(receiver, make_endpoint, webhook_worker):
    make_endpoint()
    receiver.plan(400, 200)
    fire()
    delivery = wait_until(settled(DeliveryStatus.FAILED))
    assert (delivery.attempts, delivery.last_status_code) == (1, 400)
    assert delivery.last_error.startswith("HTTP 400")
    assert receiver.count() == 1


def test_retries_stop_after_the_last_attempt(receiver, make_endpoint, webhook_worker):
    make_endpoint()
    receiver.plan(500, 500, 500, 500, 200)  # WORKER_ENV: 4 attempts
    fire()
    delivery = wait_until(settled(DeliveryStatus.FAILED))
    assert (delivery.attempts, delivery.last_status_code) == (4, 500)
    assert receiver.count() == 4


def test_an_unreachable_endpoint_is_retried_as_a_connection_error(make_endpoint, webhook_worker):
    from tools.stack import free_port

    make_endpoint(url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    fire()
    delivery = wait_until(settled(DeliveryStatus.FAILED))
    assert delivery.attempts == 4 and delivery.last_status_code is None
    assert delivery.last_error.startswith("connection error")


def test_one_delivery_per_event_when_the_signal_fires_again(receiver, make_endpoint, webhook_worker):
    """A saga step or a tick that runs again sends the same key: one row, one request."""
    make_endpoint()
    fire(key="boss.defeated:1:1")
    fire(key="boss.defeated:1:1")
    wait_until(settled())
    fire(key="boss.defeated:1:1")  # once more after the delivery
    fire(key="boss.defeated:1:2")  # the next fight's is another occurrence
    wait_until(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 2)
    assert WebhookDelivery.objects.count() == 2
    assert sorted(receiver.events()) == [DEFEATED, DEFEATED]
    assert len({r.id for r in receiver.requests}) == 2


def test_two_workers_racing_for_one_delivery_send_it_once(receiver, make_endpoint, start_worker):
    from celery import current_app

    from webhooks.conf import DELIVER_TASK

    workers = [start_worker(), start_worker()]
    make_endpoint()
    receiver.plan(("sleep", 0.3, 200))  # a slow answer: the other tasks arrive during it
    fire()
    delivery = only_delivery()
    extra = 15
    for _ in range(extra):
        current_app.send_task(DELIVER_TASK, kwargs={"delivery_id": delivery.pk})

    def outcomes():
        text = "".join(w.output() for w in workers)
        return re.findall(r"Task webhooks\.deliver\[[^\]]+\] succeeded in [\d.e-]+s: '(\w+)'", text)

    done = wait_until(lambda: len(outcomes()) == extra + 1 and outcomes(), what="every task ran")
    assert set(done) <= {"delivered", "not_due", "skipped"}
    assert done.count("delivered") == 1
    # both workers took tasks (a real race, not one worker doing them in turn)
    assert all("Task webhooks.deliver[" in w.output() for w in workers)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert receiver.count() == 1


def test_a_worker_killed_mid_attempt_is_swept_and_sent_again(receiver, make_endpoint, start_worker):
    """kill -9 during the POST: the lease runs out, beat's sweep enqueues it, another worker sends."""
    make_endpoint(timeout_ms=5_000)
    receiver.plan(("gate", 200), 200)
    first = start_worker()
    fire()
    wait_until(lambda: receiver.count() == 1, what="the first attempt reached the receiver")
    first.kill9()
    receiver.open()
    delivery = only_delivery()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    start_worker()
    beat = processes.start_beat(**WORKER_ENV)
    try:
        delivery = wait_until(settled(), timeout_s=30)
    finally:
        beat.stop()
    assert delivery.attempts == 2
    # the receiver saw the same delivery twice: it must dedupe on Webhook-Id (at-least-once)
    assert len(receiver.of_id(delivery.idempotency_key)) == 2


def test_a_phase_event_reaches_only_endpoints_that_take_it(receiver, make_endpoint, webhook_worker):
    make_endpoint(name="defeats only", events=[DEFEATED])
    make_endpoint(name="phases of boss 2", events=[PHASE], boss=None)
    fire(boss_id=2, key="boss.phase:2:1:1", event=PHASE, phase="Enraged")
    wait_until(settled())
    assert WebhookDelivery.objects.get().endpoint.name == "phases of boss 2"
    assert receiver.events() == [PHASE]
