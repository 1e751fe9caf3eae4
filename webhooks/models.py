"""Webhook endpoints of a game's backend and the delivery log (docs/webhooks.md).

An endpoint's ``secret`` is a *shared* secret: the platform keeps it (in clear, it must sign
with it) and the game's backend keeps a copy to verify ``Webhook-Signature``. It is shown
once, when the endpoint is created or rotated; a rotation keeps the previous secret signing
too for a grace period, so a backend can switch without dropping a delivery.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from bosses.signals import FIGHT_EVENTS

TEST_EVENT = "webhook.test"
SECRET_PREFIX = "whsec_"
EVENT_CHOICES = [(event, event) for event in FIGHT_EVENTS]


def secret_generate() -> str:
    """A new random endpoint secret (256 bits, URL-safe text with a recognisable prefix)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def events_validate(value: object) -> None:
    """An endpoint's events: a non-empty list of distinct fight event names."""
    if not isinstance(value, list) or not value:
        raise ValidationError("choose at least one event", code="events")
    unknown = [e for e in value if e not in FIGHT_EVENTS]
    if unknown:
        raise ValidationError(
            f"unknown event(s) {', '.join(map(str, unknown))}; known: {', '.join(FIGHT_EVENTS)}",
            code="events",
        )
    if len(set(value)) != len(value):
        raise ValidationError("an event is listed twice", code="events")


class WebhookEndpoint(models.Model):
    """A URL of a game's backend that receives signed fight events."""

    name = models.CharField(max_length=120)
    url = models.URLField(
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="http:// or https:// URL that receives the POSTs (redirects are not followed).",
    )
    events = models.JSONField(
        default=list, validators=[events_validate], help_text="The fight events sent to this endpoint."
    )
    boss = models.ForeignKey(
        "bosses.BossEncounter",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text="Only this boss's events (empty: every boss).",
    )
    secret = models.CharField(max_length=80, default=secret_generate, editable=False)
    previous_secret = models.CharField(max_length=80, blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    active = models.BooleanField(default=True)
    timeout_ms = models.PositiveIntegerField(
        default=5_000,
        validators=[MinValueValidator(100), MaxValueValidator(30_000)],
        help_text="Per-attempt timeout in milliseconds (connect and each read), 100 to 30000.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        # Creating, editing, rotating and sending need this, not only staff (webhooks/admin.py).
        permissions = [("manage_webhook", "Can create, edit, rotate and send webhooks")]

    def __str__(self) -> str:
        return self.name

    def wants(self, *, event: str, boss_id: int) -> bool:
        """True when this active endpoint takes ``event`` of boss ``boss_id``."""
        return self.active and event in self.events and self.boss_id in (None, boss_id)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event occurrence for one endpoint: created once, attempted until delivered or failed."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    event_key = models.CharField(max_length=200, help_text="Stable key of the event occurrence.")
    idempotency_key = models.CharField(
        max_length=64, unique=True, help_text="Sent as Webhook-Id; the same on every attempt."
    )
    payload = models.JSONField(help_text="The JSON body sent, the same on every attempt.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(
        help_text="Pending: when the next attempt is due (while an attempt runs: its lease end)."
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_key"], name="webhook_delivery_once_per_event")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint_id} ({self.status})"
