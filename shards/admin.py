"""Shard admin: a token is shown once on creation or rotation; retire fences every epoch."""
from __future__ import annotations

from django.contrib import admin, messages

from bosses.errors import LiveOpsError
from shards.models import Shard
from shards.services import shard_retire, shard_token_rotate


@admin.action(description="Rotate token (shown once)")
def rotate_token(modeladmin, request, queryset):
    for shard in queryset:
        token = shard_token_rotate(shard=shard)
        modeladmin.message_user(request, f"{shard.key}: new token {token} (shown once; store it now)",
                                messages.WARNING)


@admin.action(description="Retire (refuse and fence every session)")
def retire(modeladmin, request, queryset):
    for shard in queryset:
        try:
            n = shard_retire(shard=shard)
        except LiveOpsError as exc:
            modeladmin.message_user(request, f"{shard.key}: {exc}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{shard.key}: retired, {n} session(s) fenced", messages.SUCCESS)


@admin.register(Shard)
class ShardAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "region", "status", "current_epoch", "token_rotated_at")
    list_filter = ("status", "region")
    search_fields = ("key", "name", "region")
    readonly_fields = ("status", "current_epoch", "token_rotated_at", "created_at")
    actions = [rotate_token, retire]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("key",) if obj else ())

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            token = shard_token_rotate(shard=obj)
            self.message_user(request, f"{obj.key}: token {token} (shown once; store it now)",
                              messages.WARNING)
