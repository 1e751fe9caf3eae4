"""Signed webhooks to a game's backend for fight events (docs/webhooks.md)."""

from importlib import import_module

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        """Connect the fight_event receiver (webhooks/receivers.py)."""
        import_module("webhooks.receivers")  # connecting is the import's effect
