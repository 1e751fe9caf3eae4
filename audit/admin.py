"""The audit trail in the admin: read-only for everyone, searchable by actor, action and target."""

from __future__ import annotations

from django.contrib import admin

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "action", "target", "outcome", "address")
    list_filter = ("action", "outcome")
    search_fields = ("actor", "action", "target")
    date_hierarchy = "at"
    readonly_fields = ("at", "actor", "user", "action", "target", "outcome", "detail", "address")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
