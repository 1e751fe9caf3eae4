"""Designer admin for templates, frozen fight configurations and recurring spawns
(docs/liveops.md): a template's "new fight from template" and "copy" actions, each fight's
configuration beside what the boss has now (a diff), spawn schedules with their next
occurrences and a calendar of the next 14 days, and the occurrences spawned."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.services import audit_record_request
from bosses import services
from bosses.fight_configs import boss_config_current, config_diff
from bosses.models import BossEncounter, BossTemplate, FightConfig, SpawnOccurrence, SpawnSchedule
from bosses.spawn_selectors import CALENDAR_DAYS, spawns_upcoming
from core.errors import LiveOpsError
from core.recurrence import recurrence_parse


def _free_slug(model, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... the first slug no row of ``model`` has."""
    slug, n = base[:64], 1
    while model.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base[: 64 - len(str(n)) - 1]}-{n}"
    return slug


@admin.action(description="New fight from template (a draft boss)", permissions=["add_boss"])
def new_fight(modeladmin, request, queryset):
    for template in queryset:
        slug = _free_slug(BossEncounter, template.slug)
        try:
            boss = services.boss_create_from_template(template=template, name=template.name, slug=slug)
        except LiveOpsError as exc:
            audit_record_request(
                request=request, action="boss.create", target=f"boss/{slug}", outcome=exc.code
            )
            modeladmin.message_user(request, f"{template.slug}: no boss created: {exc}", messages.ERROR)
            continue
        audit_record_request(
            request=request,
            action="boss.create",
            target=f"boss/{boss.slug}",
            detail={"template": template.slug},
        )
        modeladmin.message_user(
            request,
            f"{boss.slug}: a draft boss from {template.slug}; set its schedule or go live",
            messages.SUCCESS,
        )


@admin.action(description="Copy", permissions=["add"])
def copy_templates(modeladmin, request, queryset):
    for template in queryset:
        slug = _free_slug(BossTemplate, f"{template.slug}-copy")
        fields = {f: getattr(template, f) for f in services.TEMPLATE_FIELDS}
        fields.update(slug=slug, name=f"{template.name} (copy {slug})"[:120])
        copy = services.template_save(template=None, fields=fields)
        audit_record_request(
            request=request,
            action="template.create",
            target=f"template/{copy.slug}",
            detail={"from": template.slug},
        )
        modeladmin.message_user(request, f"{copy.slug}: copied from {template.slug}", messages.SUCCESS)


@admin.register(BossTemplate)
class BossTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "hp", "phases", "crash_policy", "reward_table", "updated_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    actions = [new_fight, copy_templates]
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "description", "max_hp", "phases")}),
        (
            "Sync and crashes",
            {"fields": ("tick_interval_ms", "crash_policy", "heartbeat_interval_ms", "heartbeat_timeout_ms")},
        ),
        (
            "Platform-hosted players",
            {"fields": ("min_damage", "max_damage", "attacks_per_second", "allow_guests")},
        ),
        ("Rewards", {"fields": ("reward_table",)}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Max HP", ordering="max_hp")
    def hp(self, obj):
        return f"{obj.max_hp:,}"

    def has_add_boss_permission(self, request):
        return request.user.has_perm("bosses.add_bossencounter")

    def save_model(self, request, obj, form, change):
        """Through bosses.services.template_save (its cross-field checks), audited."""
        fields = {f: form.cleaned_data[f] for f in form.changed_data if f in services.TEMPLATE_FIELDS}
        try:
            services.template_save(template=obj, fields=fields)
        except LiveOpsError as exc:  # the form's own checks passed: a cross-field refusal
            raise ValidationError(str(exc)) from None
        audit_record_request(
            request=request,
            action="template.change" if change else "template.create",
            target=f"template/{obj.slug}",
            detail={"fields": sorted(fields)},
        )


def _value(value) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)[:400]
    return "—" if value is None else str(value)


@admin.register(FightConfig)
class FightConfigAdmin(admin.ModelAdmin):
    """Read-only: what each fight ran with, and what changed in the boss since."""

    list_display = ("boss", "fight", "template", "frozen_at", "max_hp")
    list_filter = ("boss",)
    search_fields = ("boss__slug",)
    fields = ("boss", "fight", "template", "frozen_at", "settings_table", "changes_table")
    readonly_fields = fields

    @admin.display(description="Max HP")
    def max_hp(self, obj):
        return f"{int(obj.config.get('max_hp', 0)):,}"

    @admin.display(description="Configuration (frozen)")
    def settings_table(self, obj):
        rows = [(k, _value(v)) for k, v in obj.config.items()]
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    @admin.display(description="Changed since (this fight -> the boss now)")
    def changes_table(self, obj):
        changes = config_diff(before=obj.config, after=boss_config_current(boss=obj.boss))
        if not changes:
            return "nothing: the boss's settings are this fight's"
        return format_html(
            "<table><thead><tr><th>setting</th><th>this fight</th><th>now</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
                ((c.field, _value(c.before), _value(c.after)) for c in changes),
            ),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SpawnScheduleForm(forms.ModelForm):
    """The schedule's rule, time zone and blackout dates are checked as the service checks them."""

    class Meta:
        model = SpawnSchedule
        fields = "__all__"

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            recurrence_parse(
                rule=data["rule"],
                start_date=data["start_date"],
                start_time=data["start_time"],
                tz=data["timezone"],
                blackouts=data.get("blackout_dates") or (),
            )
        except LiveOpsError as exc:
            field = exc.extra.get("field")
            raise ValidationError({field: str(exc)} if field in self.fields else str(exc)) from None
        return data


CALENDAR_ROWS = 200


@admin.register(SpawnSchedule)
class SpawnScheduleAdmin(admin.ModelAdmin):
    form = SpawnScheduleForm
    change_list_template = "admin/bosses/spawnschedule/change_list.html"
    list_display = (
        "__str__",
        "boss",
        "rule",
        "timezone",
        "start_time",
        "duration_s",
        "enabled",
        "next_spawn",
    )
    list_filter = ("enabled", "timezone")
    search_fields = ("name", "boss__slug")
    readonly_fields = ("next_spawns", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("boss", "name", "template", "enabled")}),
        (
            "When",
            {"fields": ("timezone", "rule", "start_date", "start_time", "duration_s", "blackout_dates")},
        ),
        ("Notice", {"fields": ("notice_minutes",)}),
        ("Next 14 days", {"fields": ("next_spawns",)}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def _upcoming(self, obj):
        if obj is None or obj.pk is None:
            return []
        return [s for s in spawns_upcoming(now=timezone.now(), boss=obj.boss) if s.schedule_id == obj.pk]

    @admin.display(description="Next spawn")
    def next_spawn(self, obj):
        found = self._upcoming(obj)[:1]
        return found[0].at.isoformat(timespec="minutes") if found else "—"

    @admin.display(description="Spawns (local time of the schedule, and UTC)")
    def next_spawns(self, obj):
        rows = [
            (
                s.at.astimezone(ZoneInfo(s.timezone)).strftime("%a %Y-%m-%d %H:%M %Z"),
                s.at.strftime("%Y-%m-%d %H:%M UTC"),
                s.ends_at.strftime("%H:%M UTC") if s.ends_at else "until defeated",
            )
            for s in self._upcoming(obj)[:CALENDAR_ROWS]
        ]
        if not rows:
            return "no spawn in the next 14 days"
        return format_html(
            "<table><thead><tr><th>local</th><th>UTC</th><th>ends</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def get_urls(self):
        own = [
            path(
                "calendar/",
                self.admin_site.admin_view(self.calendar_view),
                name="bosses_spawnschedule_calendar",
            )
        ]
        return own + super().get_urls()

    def calendar_view(self, request):
        """Every boss's spawns of the next 14 days, soonest first."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Spawn calendar: the next {CALENDAR_DAYS} days",
            "spawns": spawns_upcoming(now=timezone.now(), limit=CALENDAR_ROWS),
        }
        return TemplateResponse(request, "admin/bosses/spawnschedule/calendar.html", context)

    def save_model(self, request, obj, form, change):
        fields = {f: form.cleaned_data[f] for f in form.changed_data if f in services.SCHEDULE_FIELDS}
        try:
            services.spawn_schedule_save(schedule=obj, fields=fields)
        except LiveOpsError as exc:
            raise ValidationError(str(exc)) from None
        audit_record_request(
            request=request,
            action="spawn_schedule.change" if change else "spawn_schedule.create",
            target=f"boss/{obj.boss.slug}",
            detail={"schedule": obj.pk, "fields": sorted(fields)},
        )


@admin.register(SpawnOccurrence)
class SpawnOccurrenceAdmin(admin.ModelAdmin):
    """Read-only: each occurrence that was claimed, and what came of it."""

    list_display = ("at", "boss", "schedule", "fight", "status", "detail", "attempts", "spawned_at")
    list_filter = ("status", "boss")
    search_fields = ("boss__slug",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
