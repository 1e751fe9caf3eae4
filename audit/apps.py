"""The audit trail: who did what to a fight, a shard, a key or an endpoint."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
