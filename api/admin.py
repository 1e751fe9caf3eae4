"""API keys in the admin: created with their secret shown once, revoked by an action.

Both need ``api.manage_apikey`` (staff is not a role) and both are audited.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from api.models import ApiKey, ApiScope
from api.services import apikey_issue, apikey_revoke, apikey_scopes_parse
from audit.services import audit_actor_of, audit_record_request

MANAGE_PERMISSION = "api.manage_apikey"


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]

    def clean_scopes(self) -> str:
        return apikey_scopes_parse(scopes=self.cleaned_data["scopes"])


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return ["name", "scopes"] if obj is None else ["name", "prefix", *self.readonly_fields[1:], "scopes"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        # a key's scopes are fixed once it exists: a new key is the way to change them
        return self.readonly_fields + (("scopes",) if obj is not None else ())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return request.user.has_perm(MANAGE_PERMISSION)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoked, never deleted: the audit trail names keys by prefix

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key = apikey_issue(apikey=obj)
        super().save_model(request, obj, form, change)
        audit_record_request(
            request=request,
            action="apikey.create",
            target=f"apikey/{obj.prefix}",
            detail={"name": obj.name, "scopes": obj.scopes},
        )
        self.message_user(request, f"{obj.name}: API key {key} (shown once; store it now)", messages.WARNING)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for apikey in queryset.filter(revoked_at__isnull=True):
            apikey_revoke(apikey=apikey, actor=audit_actor_of(request), request=request)
        self.message_user(request, "revoked", messages.SUCCESS)
