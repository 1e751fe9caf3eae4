"""Reward tables in the admin (docs/rewards.md): tiers inline, validation, a preview, audit.

Editing a table needs ``bosses.design_rewards``; viewing it and its preview needs
``bosses.view_rewardtable`` (or the design permission). Every save and delete is audited.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.models import BaseInlineFormSet
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.services import audit_record_request
from bosses.models import BossEncounter, RewardTable, RewardTier
from bosses.selectors import reward_preview
from core import rewards

DESIGN_PERMISSION = "bosses.design_rewards"
VIEW_PERMISSION = "bosses.view_rewardtable"
PREVIEW_ROWS = 20


def _can_design(request) -> bool:
    return request.user.has_perm(DESIGN_PERMISSION)


def _can_view(request) -> bool:
    return request.user.has_perm(VIEW_PERMISSION) or _can_design(request)


def _tier_of(data: dict[str, Any]) -> rewards.Tier:
    """The pure tier of a tier form's cleaned data."""
    percent = data.get("percent")
    return rewards.Tier(
        name=data.get("name") or "",
        kind=data.get("kind") or "",
        payload=data.get("payload") if data.get("payload") is not None else {},
        rank_from=data.get("rank_from"),
        rank_to=data.get("rank_to"),
        percent=None if percent is None else Fraction(percent),
        damage_min=data.get("damage_min"),
    )


def _raise_problems(form: forms.Form, problems: list[rewards.Problem]) -> None:
    """Attach each problem to its field when the form shows it, else to the form."""
    errors: dict[str | None, list[str]] = {}
    for p in problems:
        field = p.field if p.field in form.fields else None
        errors.setdefault(field, []).append(p.message)
    if errors:
        raise ValidationError({f or "__all__": msgs for f, msgs in errors.items()})


class RewardTableForm(forms.ModelForm):
    class Meta:
        model = RewardTable
        fields = "__all__"

    def clean(self):
        data = super().clean()
        if data.get("min_damage") is None:
            return data  # a field error is already shown
        table = rewards.Table(
            tiers=(), min_damage=data["min_damage"], last_hit_payload=data.get("last_hit_payload")
        )
        _raise_problems(self, rewards.table_problems(table))
        return data


class RewardTierForm(forms.ModelForm):
    class Meta:
        model = RewardTier
        fields = "__all__"

    def clean(self):
        data = super().clean()
        if self.errors or not data.get("kind"):
            return data
        _raise_problems(self, rewards.tier_problems(_tier_of(data)))
        return data


class RewardTierFormSet(BaseInlineFormSet):
    """Checks across tiers (overlapping rank ranges, the tier count) as the table will be used."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [
            (f.cleaned_data.get("position") or 0, i, _tier_of(f.cleaned_data))
            for i, f in enumerate(self.forms)
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        kept.sort(key=lambda x: (x[0], x[1]))
        table = rewards.Table(tiers=tuple(t for _, _, t in kept))
        problems = [
            p for p in rewards.table_problems(table) if p.field not in ("min_damage", "last_hit_payload")
        ]
        if problems:
            raise ValidationError([str(p) for p in problems])


class RewardTierInline(admin.TabularInline):
    model = RewardTier
    form = RewardTierForm
    formset = RewardTierFormSet
    extra = 0
    fields = ("position", "name", "kind", "rank_from", "rank_to", "percent", "damage_min", "payload")

    def has_view_permission(self, request, obj=None):
        return _can_view(request)

    def has_add_permission(self, request, obj=None):
        return _can_design(request)

    def has_change_permission(self, request, obj=None):
        return _can_design(request)

    def has_delete_permission(self, request, obj=None):
        return _can_design(request)


def _summary(table: RewardTable) -> dict[str, Any]:
    """What the audit trail keeps of a table: its rules, not its payloads (they can be large)."""
    return {
        "name": table.name,
        "min_damage": table.min_damage,
        "last_hit": table.last_hit_payload is not None,
        "tiers": [
            {
                "name": t.name,
                "kind": t.kind,
                "rank_from": t.rank_from,
                "rank_to": t.rank_to,
                "percent": None if t.percent is None else str(t.percent),
                "damage_min": t.damage_min,
            }
            for t in table.tiers.order_by("position", "id")
        ],
    }


@admin.register(RewardTable)
class RewardTableAdmin(admin.ModelAdmin):
    form = RewardTableForm
    inlines = [RewardTierInline]
    list_display = ("name", "min_damage", "tier_count", "has_last_hit", "used_by", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("preview", "created_at", "updated_at")
    fields = ("name", "description", "min_damage", "last_hit_payload", "preview", "created_at", "updated_at")

    def has_view_permission(self, request, obj=None):
        return _can_view(request)

    def has_add_permission(self, request):
        return _can_design(request)

    def has_change_permission(self, request, obj=None):
        return _can_design(request)

    def has_delete_permission(self, request, obj=None):
        return _can_design(request)

    @admin.display(description="Tiers")
    def tier_count(self, obj):
        return obj.tiers.count()

    @admin.display(description="Last hit", boolean=True)
    def has_last_hit(self, obj):
        return obj.last_hit_payload is not None

    @admin.display(description="Bosses")
    def used_by(self, obj):
        return ", ".join(obj.bosses.values_list("slug", flat=True)) or "—"

    @admin.display(description="Preview")
    def preview(self, obj):
        if obj is None or obj.pk is None:
            return "Save the table to preview it."
        url = reverse("admin:bosses_rewardtable_preview", args=[obj.pk])
        return format_html('<a href="{}">What would this table grant now?</a>', url)

    def get_urls(self):
        own = [
            path(
                "<int:table_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="bosses_rewardtable_preview",
            )
        ]
        return own + super().get_urls()

    def preview_view(self, request, table_id: int):
        """What the table would grant for a chosen boss against its current leaderboard."""
        table = get_object_or_404(RewardTable, pk=table_id)
        if not self.has_view_permission(request, table):
            raise PermissionDenied
        bosses = list(BossEncounter.objects.order_by("name"))
        chosen = None
        result = None
        boss_id = request.GET.get("boss")
        if boss_id and boss_id.isdigit():
            chosen = get_object_or_404(BossEncounter, pk=int(boss_id))
            result = reward_preview(table=table, boss=chosen, first_rows=PREVIEW_ROWS)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Preview: {table.name}",
            "table": table,
            "bosses": bosses,
            "chosen": chosen,
            "result": result,
            "has_last_hit": table.last_hit_payload is not None,
        }
        return TemplateResponse(request, "admin/bosses/rewardtable/preview.html", context)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        audit_record_request(
            request=request,
            action="reward_table.change" if change else "reward_table.create",
            target=f"reward_table:{form.instance.pk}",
            detail=_summary(form.instance),
        )

    def delete_model(self, request, obj):
        target, detail = f"reward_table:{obj.pk}", _summary(obj)
        super().delete_model(request, obj)
        audit_record_request(request=request, action="reward_table.delete", target=target, detail=detail)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)
