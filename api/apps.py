"""The game backend's JSON API under /api/v1/ (docs/integration.md)."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
