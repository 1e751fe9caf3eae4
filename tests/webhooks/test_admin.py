"""The webhook admin: the secret shown once, rotation, send test and retry through a real worker,
the read-only delivery log, the manage permission and the audit trail."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from audit.models import AuditEntry
from bosses.signals import DEFEATED, FIGHT_EVENTS, fight_event_send
from tests.support.waiting import wait_until
from webhooks.models import TEST_EVENT, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from worldboss_sdk import webhook_verify

ADD = "admin:webhooks_webhookendpoint_add"
ENDPOINTS = "admin:webhooks_webhookendpoint_changelist"
DELIVERIES = "admin:webhooks_webhookdelivery_changelist"


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def secret_in(text: str) -> str:
    [secret] = re.findall(r"secret (whsec_[\w-]+)", text)
    return secret


def verifies(request, secret: str) -> dict:
    return webhook_verify(
        secret=secret,
        body=request.body,
        timestamp=request.headers["Webhook-Timestamp"],
        signature=request.headers["Webhook-Signature"],
    )


def create(admin_client, url: str, **overrides):
    data = {
        "name": "game backend",
        "url": url,
        "events": list(FIGHT_EVENTS),
        "timeout_ms": "2000",
        "active": "on",
    }
    data.update(overrides)
    return admin_client.post(reverse(ADD), data, follow=True)


@pytest.mark.process
def test_created_secret_is_shown_once_and_send_test_delivers_a_signed_test_event(
    admin_client, receiver, webhook_worker
):
    response = create(admin_client, receiver.url)
    [endpoint] = WebhookEndpoint.objects.all()
    secret = secret_in(" ".join(messages_of(response)))
    assert secret == endpoint.secret and secret.startswith("whsec_")
    # never on the change page again
    assert (
        secret
        not in admin_client.get(
            reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
        ).content.decode()
    )
    assert AuditEntry.objects.filter(action="webhook.create", outcome="ok").count() == 1
    assert secret not in str(list(AuditEntry.objects.values_list("detail", flat=True)))

    response = admin_client.post(
        reverse(ENDPOINTS), {"action": "send_test", "_selected_action": [endpoint.pk]}, follow=True
    )
    assert "test delivery wh_" in " ".join(messages_of(response))
    delivery = wait_until(
        lambda: WebhookDelivery.objects.filter(event=TEST_EVENT, status=DeliveryStatus.DELIVERED).first()
    )
    [request] = receiver.requests
    body = verifies(request, secret)
    assert body["event"] == TEST_EVENT == request.headers["Webhook-Event"]
    assert body["id"] == delivery.idempotency_key and body["data"]["endpoint"] == "game backend"
    assert AuditEntry.objects.filter(
        action="webhook.send_test", target__startswith=f"webhook/{endpoint.pk}/"
    ).exists()


@pytest.mark.process
def test_rotation_signs_with_both_secrets_during_the_grace_period(admin_client, receiver, webhook_worker):
    create(admin_client, receiver.url)
    endpoint = WebhookEndpoint.objects.get()
    old = endpoint.secret
    response = admin_client.post(
        reverse(ENDPOINTS), {"action": "rotate_secret", "_selected_action": [endpoint.pk]}, follow=True
    )
    new = secret_in(" ".join(messages_of(response)))
    endpoint.refresh_from_db()
    assert new == endpoint.secret != old
    assert AuditEntry.objects.filter(action="webhook.rotate_secret").count() == 1
    admin_client.post(reverse(ENDPOINTS), {"action": "send_test", "_selected_action": [endpoint.pk]})
    wait_until(lambda: receiver.count() == 1)
    [request] = receiver.requests
    assert len(request.headers["Webhook-Signature"].split()) == 2
    verifies(request, new)  # a backend that already switched
    verifies(request, old)  # and one that has not yet


@pytest.mark.process
def test_retry_now_sends_a_failed_delivery_again(admin_client, receiver, webhook_worker):
    create(admin_client, receiver.url)
    receiver.plan(404)
    fight_event_send(boss_id=1, slug="wyrm", fight=1, event=DEFEATED, key="boss.defeated:1:1", payload={})
    delivery = wait_until(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.FAILED).first())
    assert delivery.attempts == 1
    response = admin_client.post(
        reverse(DELIVERIES), {"action": "retry_now", "_selected_action": [delivery.pk]}, follow=True
    )
    assert "1 delivery(ies) enqueued again" in " ".join(messages_of(response))
    wait_until(lambda: WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED)
    assert [r.id for r in receiver.requests] == [delivery.idempotency_key] * 2
    assert AuditEntry.objects.filter(action="webhook.retry").count() == 1
    # a delivered one is left alone
    response = admin_client.post(
        reverse(DELIVERIES), {"action": "retry_now", "_selected_action": [delivery.pk]}, follow=True
    )
    assert "not failed" in " ".join(messages_of(response))


def test_only_http_and_https_urls_and_known_events_are_accepted(admin_client):
    response = create(admin_client, "ftp://example.com/hooks")
    assert "Enter a valid URL" in response.content.decode()
    response = create(admin_client, "https://example.com/hooks", events=["boss.nope"])
    assert "not one of the available choices" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_delivery_log_is_read_only_and_filters(admin_client, db):
    endpoint = WebhookEndpoint.objects.create(name="b", url="https://example.com/h", events=[DEFEATED])
    page = admin_client.get(reverse(DELIVERIES) + "?status__exact=failed&event=boss.defeated")
    assert page.status_code == 200
    assert admin_client.get(reverse("admin:webhooks_webhookdelivery_add")).status_code == 403
    assert endpoint.secret not in admin_client.get(reverse(ENDPOINTS)).content.decode()


@pytest.fixture
def viewer(client, db):
    """Staff with the view permissions of the webhooks, without ``manage_webhook``."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_webhookendpoint", "view_webhookdelivery"])
    )
    client.force_login(user)
    return client


def test_without_the_manage_permission_nothing_can_be_created_sent_or_retried(viewer, db):
    endpoint = WebhookEndpoint.objects.create(name="b", url="https://example.com/h", events=[DEFEATED])
    assert viewer.get(reverse(ENDPOINTS)).status_code == 200
    assert viewer.get(reverse(ADD)).status_code == 403
    page = viewer.get(reverse(ENDPOINTS)).content.decode()
    assert "send_test" not in page and "rotate_secret" not in page
    response = viewer.post(reverse(ENDPOINTS), {"action": "send_test", "_selected_action": [endpoint.pk]})
    assert not WebhookDelivery.objects.exists()
    assert response.status_code in (200, 302)
    assert "retry_now" not in viewer.get(reverse(DELIVERIES)).content.decode()
    assert (
        endpoint.secret
        not in viewer.get(
            reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
        ).content.decode()
    )
