"""The audit trail: who did what to a fight, a shard, a key or an endpoint."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        # connects the login signals (imported here: the module needs the auth app loaded)
        from audit import login_throttle  # noqa: F401, PLC0415
