"""Signed webhooks to a game's backend for fight events (docs/webhooks.md)."""

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
