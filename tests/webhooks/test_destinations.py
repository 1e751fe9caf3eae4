"""Webhooks never POST into the platform's own network unless a deployment opts in
(``WEBHOOK_ALLOW_PRIVATE_DESTINATIONS``, off in production): the address actually connected
to is checked, after DNS, before any byte of the body is sent."""

from __future__ import annotations

import pytest

from bosses.signals import DEFEATED, fight_event_send
from tests.support.waiting import wait_until
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import destination_problem, webhook_post

pytestmark = [pytest.mark.process]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::5",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_internal_addresses_are_refused_when_not_allowed(settings, address):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = False
    assert "internal address" in destination_problem(address)
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = True
    assert destination_problem(address) is None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(settings, address):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = False
    assert destination_problem(address) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_name_or_literal_that_reaches_loopback_is_refused_before_the_body_is_sent(settings, receiver, host):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = False
    url = f"http://{host}:{receiver.port}/hooks"
    outcome = webhook_post(url=url, body=b"{}", headers={"Content-Type": "application/json"}, timeout_s=2)
    assert outcome.status_code is None and not outcome.retryable, outcome
    assert "internal address" in outcome.error
    assert receiver.count() == 0
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = True
    assert webhook_post(url=url, body=b"{}", headers={}, timeout_s=2).delivered
    assert receiver.count() == 1


def test_a_worker_on_the_production_default_fails_the_delivery_at_once(receiver, make_endpoint, start_worker):
    start_worker(WEBHOOK_ALLOW_PRIVATE_DESTINATIONS="0")
    make_endpoint()
    fight_event_send(boss_id=1, slug="wyrm", fight=1, event=DEFEATED, payload={"version": 3})

    def failed():
        delivery = WebhookDelivery.objects.first()
        return delivery if delivery is not None and delivery.status == DeliveryStatus.FAILED else None

    delivery = wait_until(failed)
    assert delivery.attempts == 1 and "internal address" in delivery.last_error
    assert receiver.count() == 0
