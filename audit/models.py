"""One row per operator, designer or API action: who, what, on which target, and the result."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """Who did what: written by :func:`audit.services.audit_record` in the action's own request.

    ``actor`` is a readable name that stays when the user or key is deleted: ``user:<username>``,
    ``apikey:<prefix>`` or ``system:<what>`` (the schedule, a saga). ``outcome`` is ``ok`` or the
    stable error code the action was refused with.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=120)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=64)
    target = models.CharField(
        max_length=200, help_text="e.g. boss/<slug>, shard/<key>, reward/<id>, webhook/<id>"
    )
    outcome = models.CharField(max_length=64, default="ok")
    detail = models.JSONField(default=dict, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target", "-at"], name="audit_target_at")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}: {self.outcome}"
