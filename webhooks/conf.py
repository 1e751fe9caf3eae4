"""Webhook delivery settings (docs/webhooks.md, "Retries"): read from the environment by
liveops/settings.py through core.config (WEBHOOK_MAX_ATTEMPTS, WEBHOOK_BACKOFF_BASE_MS, ...,
with their meanings and bounds in core.config.REGISTRY); tests override them as settings."""

from __future__ import annotations

from django.conf import settings

WEBHOOK_QUEUE = "webhooks"
DELIVER_TASK = "webhooks.deliver"
SWEEP_TASK = "webhooks.sweep"


def webhook_setting(name: str) -> int:
    """The whole-number webhook setting ``name`` (checked when the settings were read)."""
    value: int = getattr(settings, name)
    return value
