"""Designer admin: encounters with live HP from Redis, lifecycle actions, saga and event history."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from bosses import services
from bosses.errors import LiveOpsError
from bosses.models import BossEncounter, BossEvent, BossStatus, SagaRun
from bosses.selectors import boss_state

# Fields that shape a running authority: editable only while the boss is a draft.
FROZEN_WHEN_RUNNING = ("max_hp", "phases", "slug")


class BossEncounterForm(forms.ModelForm):
    class Meta:
        model = BossEncounter
        fields = "__all__"

    def clean(self):
        data = super().clean()
        probe = BossEncounter(**{f: data.get(f, getattr(self.instance, f))
                                 for f in ("phases", "min_damage", "max_damage", "starts_at", "ends_at",
                                           "heartbeat_interval_ms", "heartbeat_timeout_ms")})
        if any(data.get(f) is None for f in ("min_damage", "max_damage", "heartbeat_interval_ms",
                                              "heartbeat_timeout_ms")):
            return data  # a field error is already shown
        try:
            services.boss_validate_config(boss=probe)
        except LiveOpsError as exc:
            field = exc.extra.get("field")
            raise ValidationError({field: str(exc)} if field in self.fields else str(exc)) from None
        return data


def _run_action(modeladmin, request, queryset, fn, verb: str) -> None:
    for boss in queryset:
        try:
            fn(boss=boss)
        except LiveOpsError as exc:
            modeladmin.message_user(request, f"{boss.slug}: could not {verb}: {exc}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"{boss.slug}: {verb} done", messages.SUCCESS)


@admin.action(description="Go live (seed the authority)")
def go_live(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_go_live, "go live")


@admin.action(description="Pause")
def pause(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_pause, "pause")


@admin.action(description="Resume")
def resume(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_resume, "resume")


@admin.action(description="End (expire undefeated)")
def end(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_end, "end")


@admin.action(description="Reset to draft (not while live)")
def reset(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_reset, "reset")


@admin.register(BossEncounter)
class BossEncounterAdmin(admin.ModelAdmin):
    form = BossEncounterForm
    list_display = ("name", "slug", "status", "live_hp", "live_version", "max_hp", "crash_policy",
                    "starts_at", "ends_at")
    list_filter = ("status", "crash_policy")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    actions = [go_live, pause, resume, end, reset]
    readonly_fields = ("live_hp", "live_version", "fight", "defeated_at", "final_hp", "final_version",
                       "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "status", "fight", "max_hp", "phases")}),
        ("Live", {"fields": ("live_hp", "live_version", "defeated_at", "final_hp", "final_version")}),
        ("Sync and crashes", {"fields": ("tick_interval_ms", "crash_policy", "heartbeat_interval_ms",
                                         "heartbeat_timeout_ms")}),
        ("Schedule", {"fields": ("starts_at", "ends_at")}),
        ("Platform-hosted players", {"fields": ("min_damage", "max_damage", "attacks_per_second")}),
    )

    def get_readonly_fields(self, request, obj=None):
        ro = list(self.readonly_fields) + ["status"]
        if obj is not None and obj.status != BossStatus.DRAFT:
            ro += list(FROZEN_WHEN_RUNNING)
        return ro

    def _state(self, obj):
        if not hasattr(obj, "_live_state"):
            try:
                obj._live_state = boss_state(boss_id=obj.pk) if obj.pk else None
            except Exception:  # the admin must still open when Redis is down
                obj._live_state = None
        return obj._live_state

    @admin.display(description="Live HP")
    def live_hp(self, obj):
        state = self._state(obj)
        return f"{state.hp:,} / {state.max_hp:,} ({state.status})" if state else "—"

    @admin.display(description="Version")
    def live_version(self, obj):
        state = self._state(obj)
        return state.version if state else "—"


@admin.register(BossEvent)
class BossEventAdmin(admin.ModelAdmin):
    list_display = ("boss", "fight", "version", "kind", "status", "hp", "applied", "overkill", "ts_ms")
    list_filter = ("kind", "boss")
    search_fields = ("boss__slug",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SagaRun)
class SagaRunAdmin(admin.ModelAdmin):
    list_display = ("key", "kind", "boss", "status", "shard_key", "policy", "amount", "attempts",
                    "started_at", "finished_at")
    list_filter = ("kind", "status", "policy")
    search_fields = ("key", "shard_key", "boss__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
