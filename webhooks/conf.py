"""Webhook delivery settings: a Django setting of the same name wins, then the environment,
then the default (docs/webhooks.md, "Retries")."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

WEBHOOK_QUEUE = "webhooks"
DELIVER_TASK = "webhooks.deliver"
SWEEP_TASK = "webhooks.sweep"

_DEFAULTS = {
    # Attempts of one delivery before it is marked failed (the first one included).
    "WEBHOOK_MAX_ATTEMPTS": 12,
    # Wait before attempt n+1: between half and all of min(BASE * 2**(n-1), MAX).
    "WEBHOOK_BACKOFF_BASE_MS": 2_000,
    "WEBHOOK_BACKOFF_MAX_MS": 900_000,
    # An attempt holds its delivery for the endpoint's timeout plus this margin; past that,
    # the sweep takes the attempt's worker for dead and sends again.
    "WEBHOOK_LEASE_MARGIN_MS": 30_000,
    # The sweep (beat) re-enqueues deliveries pending this long past their next_attempt_at.
    "WEBHOOK_SWEEP_INTERVAL_MS": 10_000,
    "WEBHOOK_SWEEP_GRACE_MS": 60_000,
    # After a rotation the previous secret still signs (a second v1= value) this long.
    "WEBHOOK_SECRET_GRACE_S": 86_400,
}


def webhook_setting(name: str) -> int:
    """The whole-number setting ``name`` (settings, then ``$name``, then the default)."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, "").strip() or _DEFAULTS[name]
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise ImproperlyConfigured(f"{name} must be a whole number >= 0, got {value!r}")
    return number
