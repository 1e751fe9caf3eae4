"""Webhook admin: endpoints (secret shown once, rotate, send test) and the read-only delivery log.

Creating, editing, deleting, rotating and sending need ``webhooks.manage_webhook``; a staff
user with the view permissions only reads. Every change is in the audit trail; secrets never
go in it.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from audit.services import audit_record_request
from webhooks.models import EVENT_CHOICES, WebhookDelivery, WebhookEndpoint
from webhooks.services import delivery_retry, endpoint_secret_rotate, endpoint_test_send

MANAGE_PERMISSION = "webhooks.manage_webhook"


def _target(endpoint: WebhookEndpoint) -> str:
    return f"webhook/{endpoint.pk}/{endpoint.name}"[:200]


class WebhookEndpointForm(forms.ModelForm):
    """The events as checkboxes (the model stores them as a JSON list)."""

    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple)
    url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "events", "boss", "active", "timeout_ms")


@admin.action(description="Rotate secret (the new one is shown once)", permissions=["manage"])
def rotate_secret(modeladmin, request, queryset):
    for endpoint in queryset:
        secret = endpoint_secret_rotate(endpoint=endpoint)
        audit_record_request(request=request, action="webhook.rotate_secret", target=_target(endpoint))
        modeladmin.message_user(
            request,
            f"{endpoint.name}: new secret {secret} (shown once; store it now). "
            "The previous one still signs during the grace period.",
            messages.WARNING,
        )


@admin.action(description="Send a test event (webhook.test)", permissions=["manage"])
def send_test(modeladmin, request, queryset):
    for endpoint in queryset:
        delivery = endpoint_test_send(endpoint=endpoint)
        audit_record_request(
            request=request,
            action="webhook.send_test",
            target=_target(endpoint),
            detail={"delivery": delivery.pk, "webhook_id": delivery.idempotency_key},
        )
        modeladmin.message_user(
            request, f"{endpoint.name}: test delivery {delivery.idempotency_key} enqueued", messages.SUCCESS
        )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("name", "url", "active", "boss", "event_list", "timeout_ms", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "url")
    readonly_fields = ("secret_rotated_at", "created_at")
    actions = [send_test, rotate_secret]

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    def has_manage_permission(self, request) -> bool:
        """Sending, rotating and any change need ``webhooks.manage_webhook`` (a secret is
        shown to whoever creates or rotates it)."""
        return request.user.has_perm(MANAGE_PERMISSION)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and self.has_manage_permission(request)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self.has_manage_permission(request)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self.has_manage_permission(request)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        detail = {"url": obj.url, "events": obj.events, "active": obj.active, "boss": obj.boss_id}
        if change:
            audit_record_request(
                request=request,
                action="webhook.change",
                target=_target(obj),
                detail={**detail, "changed": form.changed_data},
            )
            return
        audit_record_request(request=request, action="webhook.create", target=_target(obj), detail=detail)
        self.message_user(
            request,
            f"{obj.name}: secret {obj.secret} (shown once; store it now: the game's backend "
            "verifies Webhook-Signature with it)",
            messages.WARNING,
        )

    def delete_model(self, request, obj):
        audit_record_request(request=request, action="webhook.delete", target=_target(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            audit_record_request(request=request, action="webhook.delete", target=_target(endpoint))
        super().delete_queryset(request, queryset)


@admin.action(description="Retry now (failed deliveries)", permissions=["manage"])
def retry_now(modeladmin, request, queryset):
    retried, skipped = 0, 0
    for delivery in queryset.select_related("endpoint"):
        if delivery_retry(delivery=delivery):
            retried += 1
            audit_record_request(
                request=request,
                action="webhook.retry",
                target=_target(delivery.endpoint),
                detail={"delivery": delivery.pk, "webhook_id": delivery.idempotency_key},
            )
        else:
            skipped += 1
    modeladmin.message_user(request, f"{retried} delivery(ies) enqueued again", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(
            request, f"{skipped} not failed (pending or delivered): left alone", messages.WARNING
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only; a failed delivery can be sent again."""

    list_display = (
        "idempotency_key",
        "endpoint",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "response_ms",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    )
    list_filter = ("status", "event", "endpoint")
    search_fields = ("idempotency_key", "event_key")
    actions = [retry_now]
    list_select_related = ("endpoint",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in WebhookDelivery._meta.fields]

    def has_manage_permission(self, request) -> bool:
        """Retrying needs ``webhooks.manage_webhook``."""
        return request.user.has_perm(MANAGE_PERMISSION)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
