"""Designer admin: encounters with live HP from Redis, lifecycle actions, saga and event history.

The shard admin is here too: retiring a shard runs a crash saga for each of its sessions
(``bosses.sagas.crash``), and the shards app sits below this one (docs/architecture.md).
"""

from __future__ import annotations

import copy

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from audit.services import audit_record_request
from bosses import rules, services
from bosses.models import (
    BossEncounter,
    BossEvent,
    BossStatus,
    Contribution,
    FightConfig,
    RewardGrant,
    SagaRun,
)
from bosses.sagas.crash import shard_retire
from bosses.selectors import boss_state
from core.errors import LiveOpsError
from shards.models import Shard
from shards.services import shard_token_rotate


class BossEncounterForm(forms.ModelForm):
    """The designer fields; what the boss's status lets change is judged by bosses.rules (the
    fields it freezes are read-only on the page, and a change of one is refused here too: the
    status may have moved since the page was opened)."""

    class Meta:
        model = BossEncounter
        fields = "__all__"

    def clean(self):
        data = super().clean()
        refusal = rules.boss_edit_refusal(
            boss=self.instance, changes={f: data[f] for f in self.changed_data if f in data}
        )
        if refusal is not None:
            field, reason = refusal
            raise ValidationError({field: reason} if field in self.fields else reason)
        probe = BossEncounter(
            **{
                f: data.get(f, getattr(self.instance, f))
                for f in (
                    "phases",
                    "min_damage",
                    "max_damage",
                    "starts_at",
                    "ends_at",
                    "heartbeat_interval_ms",
                    "heartbeat_timeout_ms",
                )
            }
        )
        if any(
            data.get(f) is None
            for f in ("min_damage", "max_damage", "heartbeat_interval_ms", "heartbeat_timeout_ms")
        ):
            return data  # a field error is already shown
        try:
            services.boss_validate_config(boss=probe)
        except LiveOpsError as exc:
            field = exc.extra.get("field")
            raise ValidationError({field: str(exc)} if field in self.fields else str(exc)) from None
        return data


def _run_action(modeladmin, request, queryset, fn, verb: str, note=None) -> None:
    """Run ``fn`` on each selected boss; ``note(before, after)`` may add to the success message."""
    action = f"boss.{fn.__name__.removeprefix('boss_')}"
    for boss in queryset:
        before = copy.copy(boss)
        try:
            fn(boss=boss)
        except LiveOpsError as exc:
            audit_record_request(request=request, action=action, target=f"boss/{boss.slug}", outcome=exc.code)
            modeladmin.message_user(request, f"{boss.slug}: could not {verb}: {exc}", messages.ERROR)
        else:
            audit_record_request(request=request, action=action, target=f"boss/{boss.slug}")
            extra = note(before, boss) if note else ""
            modeladmin.message_user(request, f"{boss.slug}: {verb} done{extra}", messages.SUCCESS)


@admin.action(description="Go live (seed the authority)", permissions=["operate"])
def go_live(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_go_live, "go live")


@admin.action(description="Pause", permissions=["operate"])
def pause(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_pause, "pause")


@admin.action(description="Resume", permissions=["operate"])
def resume(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_resume, "resume")


@admin.action(description="End (expire undefeated)", permissions=["operate"])
def end(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_end, "end")


@admin.action(description="Reset to draft (not while live)", permissions=["operate"])
def reset(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, services.boss_reset, "reset", note=_schedule_cleared)


@admin.action(description="Copy (a new draft with the same settings)", permissions=["add"])
def copy_bosses(modeladmin, request, queryset):
    for boss in queryset:
        slug, n = f"{boss.slug}-copy"[:64], 1
        while BossEncounter.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{boss.slug[:56]}-copy-{n}"
        copy = services.boss_copy(boss=boss, name=boss.name, slug=slug)
        audit_record_request(
            request=request, action="boss.create", target=f"boss/{copy.slug}", detail={"from": boss.slug}
        )
        modeladmin.message_user(request, f"{copy.slug}: a draft copy of {boss.slug}", messages.SUCCESS)


def _schedule_cleared(before, after) -> str:
    """Say which past times a reset cleared, so the designer knows to set the next fight's."""
    cleared = [
        label
        for label, field in (("start", "starts_at"), ("end", "ends_at"))
        if getattr(before, field) and not getattr(after, field)
    ]
    if not cleared:
        return ""
    return f"; its past {' and '.join(cleared)} time was cleared: set a new schedule to start the next fight"


class ReadOnlyInline(admin.TabularInline):
    """History rows shown under a parent: never added, changed or deleted by hand."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SagaRunInline(ReadOnlyInline):
    """The boss's sagas (victory and crash), newest first."""

    model = SagaRun
    fields = (
        "key",
        "kind",
        "fight",
        "status",
        "shard_key",
        "policy",
        "amount",
        "attempts",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    ordering = ("-started_at",)


class FightConfigInline(ReadOnlyInline):
    """Each fight's frozen configuration; its page shows what changed since."""

    model = FightConfig
    fields = ("fight", "template", "frozen_at")
    readonly_fields = fields
    ordering = ("-fight",)
    verbose_name_plural = "Fight configurations (frozen at go-live; open one for what changed since)"


@admin.register(BossEncounter)
class BossEncounterAdmin(admin.ModelAdmin):
    form = BossEncounterForm
    list_display = (
        "name",
        "slug",
        "status",
        "live_hp",
        "live_version",
        "max_hp",
        "crash_policy",
        "starts_at",
        "ends_at",
    )
    list_filter = ("status", "crash_policy")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    actions = [go_live, pause, resume, end, reset, copy_bosses]

    def has_operate_permission(self, request):
        """The lifecycle actions need ``bosses.operate_boss``: staff alone is not a role."""
        return request.user.has_perm("bosses.operate_boss")

    inlines = [FightConfigInline, SagaRunInline]
    readonly_fields = (
        "template",
        "live_hp",
        "live_version",
        "fight",
        "defeated_at",
        "final_hp",
        "final_version",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "slug", "status", "fight", "template", "max_hp", "phases")}),
        ("Live", {"fields": ("live_hp", "live_version", "defeated_at", "final_hp", "final_version")}),
        (
            "Sync and crashes",
            {"fields": ("tick_interval_ms", "crash_policy", "heartbeat_interval_ms", "heartbeat_timeout_ms")},
        ),
        ("Schedule", {"fields": ("starts_at", "ends_at")}),
        (
            "Platform-hosted players",
            {"fields": ("min_damage", "max_damage", "attacks_per_second", "allow_guests")},
        ),
        ("Rewards", {"fields": ("reward_table",)}),
    )

    def get_prepopulated_fields(self, request, obj=None):
        # A frozen slug is read-only; prepopulating a read-only field breaks the page.
        if "slug" not in self._editable(obj):
            return {}
        return super().get_prepopulated_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        editable = self._editable(obj)
        frozen = [f for f in rules.DESIGNER_FIELDS if f not in editable]
        return [*self.readonly_fields, "status", *frozen]

    @staticmethod
    def _editable(obj) -> tuple[str, ...]:
        return rules.boss_editable_fields(status=obj.status if obj is not None else BossStatus.DRAFT)

    def get_object(self, request, object_id, from_field=None):
        # A save locks the row (the admin's change view runs in one transaction), so the
        # status the form is judged against cannot move before the save.
        obj = super().get_object(request, object_id, from_field)
        if obj is not None and request.method == "POST":
            obj = BossEncounter.objects.select_for_update().filter(pk=obj.pk).first()
        return obj

    def save_model(self, request, obj, form, change):
        """A new draft is saved by the form (its checks are boss_create's); a change goes
        through bosses.services.boss_update, which writes only the changed fields."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        fields = {f: form.cleaned_data[f] for f in form.changed_data if f in rules.DESIGNER_FIELDS}
        services.boss_update(boss_id=obj.pk, fields=fields)
        obj.refresh_from_db()

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


class RewardGrantInline(ReadOnlyInline):
    """The rewards a victory saga granted (one per player)."""

    model = RewardGrant
    fk_name = "saga"
    fields = ("player", "rank", "tier", "damage", "granted_at")
    readonly_fields = fields
    ordering = ("rank",)
    max_num = 0


@admin.register(SagaRun)
class SagaRunAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "kind",
        "boss",
        "status_badge",
        "shard_key",
        "policy",
        "amount",
        "attempts",
        "started_at",
        "finished_at",
    )
    list_filter = ("kind", "status", "policy")
    search_fields = ("key", "shard_key", "boss__slug")
    fields = (
        "key",
        "kind",
        "boss",
        "fight",
        "status",
        "shard_key",
        "epoch",
        "policy",
        "amount",
        "attempts",
        "started_at",
        "finished_at",
        "error_summary",
        "steps_table",
        "leaderboard_table",
        "detail_summary",
    )
    readonly_fields = fields
    inlines = [RewardGrantInline]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        colour = {"completed": "#2e7d32", "running": "#b26a00", "failed": "#c62828"}.get(obj.status, "#555")
        return format_html('<b style="color:{}">{}</b>', colour, obj.get_status_display())

    @admin.display(description="Error")
    def error_summary(self, obj):
        # A failed saga keeps its last error here; a running one, the error of its last attempt.
        error = (obj.detail or {}).get("error")
        if not error:
            return "—"
        return format_html(
            '<span style="color:#c62828">{}: {}: {}</span> (attempt {}, {})',
            error.get("step") or "—",
            error.get("type", ""),
            error.get("message", ""),
            error.get("attempt", "?"),
            error.get("at", ""),
        )

    @admin.display(description="Steps")
    def steps_table(self, obj):
        if not obj.steps:
            return "— (no step recorded yet)"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    i + 1,
                    st.get("step", ""),
                    st.get("at", ""),
                    ", ".join(f"{k}={v}" for k, v in st.items() if k not in ("step", "at")),
                )
                for i, st in enumerate(obj.steps)
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>step</th><th>at</th><th>detail</th></tr>{}</table>", rows
        )

    @admin.display(description="Leaderboard")
    def leaderboard_table(self, obj):
        board = (obj.detail or {}).get("leaderboard")
        if not board:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e["rank"], e["player"], f"{e['damage']:,}") for e in board),
        )
        return format_html("<table><tr><th>rank</th><th>player</th><th>damage</th></tr>{}</table>", rows)

    @admin.display(description="Detail")
    def detail_summary(self, obj):
        detail = dict(obj.detail or {})
        for big in ("players", "shards", "leaderboard"):  # shown elsewhere, or too long for a page
            if big in detail:
                detail[big] = f"{len(detail[big])} entries"
        detail.pop("error", None)  # its own row
        return ", ".join(f"{k}={v}" for k, v in detail.items()) or "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Contribution)
class ContributionAdmin(admin.ModelAdmin):
    """Per-shard and per-player damage of won fights (written by the victory saga)."""

    list_display = ("boss", "fight", "kind", "rank", "name", "damage")
    list_filter = ("kind", "boss")
    search_fields = ("name", "boss__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RewardGrant)
class RewardGrantAdmin(admin.ModelAdmin):
    """One reward per player per won fight (unique; granted by the victory saga)."""

    list_display = ("player", "boss", "fight", "rank", "tier", "damage", "granted_at")
    list_filter = ("tier", "boss")
    search_fields = ("player", "boss__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- shards ------------------------------------------------------------------------------


@admin.action(description="Rotate token (shown once)", permissions=["manage"])
def rotate_token(modeladmin, request, queryset):
    for shard in queryset:
        token = shard_token_rotate(shard=shard)
        audit_record_request(request=request, action="shard.rotate_token", target=f"shard/{shard.key}")
        modeladmin.message_user(
            request, f"{shard.key}: new token {token} (shown once; store it now)", messages.WARNING
        )


@admin.action(description="Retire (refuse and fence every session)", permissions=["manage"])
def retire(modeladmin, request, queryset):
    for shard in queryset:
        try:
            n = shard_retire(shard=shard)
        except LiveOpsError as exc:
            audit_record_request(
                request=request, action="shard.retire", target=f"shard/{shard.key}", outcome=exc.code
            )
            modeladmin.message_user(request, f"{shard.key}: {exc}", messages.ERROR)
        else:
            audit_record_request(
                request=request, action="shard.retire", target=f"shard/{shard.key}", detail={"fenced": n}
            )
            modeladmin.message_user(request, f"{shard.key}: retired, {n} session(s) fenced", messages.SUCCESS)


@admin.register(Shard)
class ShardAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "kind", "region", "status", "current_epoch", "token_rotated_at")
    list_filter = ("kind", "status", "region")
    search_fields = ("key", "name", "region")
    readonly_fields = ("status", "current_epoch", "token_rotated_at", "created_at")
    actions = [rotate_token, retire]

    def has_manage_permission(self, request):
        """Rotating a token (it is shown once, to whoever rotates it) and retiring need
        ``shards.manage_shard``: a view-only staff user can do neither."""
        return request.user.has_perm("shards.manage_shard")

    def has_add_permission(self, request):
        # adding a shard issues its token (shown once): the same permission as rotating
        return super().has_add_permission(request) and self.has_manage_permission(request)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("key",) if obj else ())

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            token = shard_token_rotate(shard=obj)
            audit_record_request(request=request, action="shard.create", target=f"shard/{obj.key}")
            self.message_user(
                request, f"{obj.key}: token {token} (shown once; store it now)", messages.WARNING
            )
