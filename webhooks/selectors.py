"""Reads of the webhook tables."""

from __future__ import annotations

from datetime import datetime

from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


def endpoints_for_event(*, event: str, boss_id: int) -> list[WebhookEndpoint]:
    """The active endpoints that take ``event`` of boss ``boss_id`` (the list is small: the
    events filter runs here, the same on SQLite and PostgreSQL)."""
    return [e for e in WebhookEndpoint.objects.filter(active=True) if e.wants(event=event, boss_id=boss_id)]


def deliveries_stuck(*, before: datetime, limit: int) -> list[tuple[int, datetime]]:
    """``(id, next_attempt_at)`` of pending deliveries due before ``before``, oldest first."""
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lt=before)
        .order_by("next_attempt_at")
        .values_list("pk", "next_attempt_at")[:limit]
    )
