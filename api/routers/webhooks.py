"""/webhooks: a backend manages the endpoints that receive its signed fight events
(docs/webhooks.md): list, read, create (the secret shown once), change, rotate the secret,
delete. Every write is a webhooks service, audited with the key as actor, never a secret."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from api import auth
from api.routers.common import Paging, audited, errors
from api.schemas import WebhookCreate, WebhookOut, WebhookPage, WebhookPatch, WebhookWithSecret
from bosses.selectors import boss_get
from core.errors import NotFound
from webhooks.models import WebhookEndpoint
from webhooks.services import endpoint_save, endpoint_secret_rotate

router = Router(tags=["webhooks"])


def webhook_out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The API's view of an endpoint (its boss by slug, never its secrets)."""
    out = {f: getattr(endpoint, f) for f in WebhookOut.model_fields if f != "boss"}
    out["id"] = endpoint.pk
    out["boss"] = endpoint.boss.slug if endpoint.boss_id and endpoint.boss else None
    return out


def _endpoint(webhook_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_related("boss").filter(pk=webhook_id).first()
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {webhook_id}")
    return endpoint


def _fields(payload: WebhookPatch) -> dict[str, Any]:
    """The fields the call sets, its boss slug resolved (unknown: 404 unknown_boss)."""
    fields = payload.model_dump(exclude_unset=True)
    if "boss" in fields:
        fields["boss"] = boss_get(slug=fields["boss"]) if fields["boss"] else None
    return fields


@router.get("/webhooks", response={200: WebhookPage, **errors()}, auth=auth.OPERATE, summary="List webhooks")
def webhooks_list(request: HttpRequest, paging: Query[Paging]) -> dict[str, Any]:
    """Every endpoint, by name, one page at a time."""
    rows = WebhookEndpoint.objects.select_related("boss").order_by("name", "pk")
    return {
        "count": rows.count(),
        "offset": paging.offset,
        "limit": paging.limit,
        "items": [webhook_out(e) for e in rows[paging.offset : paging.offset + paging.limit]],
    }


@router.get(
    "/webhooks/{webhook_id}",
    response={200: WebhookOut, **errors(404)},
    auth=auth.OPERATE,
    summary="Read a webhook",
)
def webhooks_read(request: HttpRequest, webhook_id: int) -> dict[str, Any]:
    """One endpoint's settings."""
    return webhook_out(_endpoint(webhook_id))


@router.post(
    "/webhooks",
    response={201: WebhookWithSecret, **errors(400, 404)},
    auth=auth.OPERATE,
    summary="Create a webhook",
)
def webhooks_create(request: HttpRequest, payload: WebhookCreate) -> tuple[int, dict[str, Any]]:
    """A new endpoint and its signing secret (shown once)."""
    endpoint = audited(
        request,
        action="webhook.create",
        target=f"webhook/{payload.name}",
        work=lambda: endpoint_save(endpoint=None, fields=_fields(payload)),
        detail={"url": payload.url, "events": payload.events},
    )
    return 201, {"endpoint": webhook_out(endpoint), "secret": endpoint.secret}


@router.patch(
    "/webhooks/{webhook_id}",
    response={200: WebhookOut, **errors(400, 404)},
    auth=auth.OPERATE,
    summary="Edit a webhook",
)
def webhooks_update(request: HttpRequest, webhook_id: int, payload: WebhookPatch) -> dict[str, Any]:
    """Change an endpoint's name, URL, events, boss, timeout or whether it is active."""
    endpoint = audited(
        request,
        action="webhook.update",
        target=f"webhook/{webhook_id}",
        work=lambda: endpoint_save(endpoint=_endpoint(webhook_id), fields=_fields(payload)),
        detail={"fields": sorted(payload.model_dump(exclude_unset=True))},
    )
    return webhook_out(endpoint)


@router.post(
    "/webhooks/{webhook_id}/secret",
    response={200: WebhookWithSecret, **errors(404)},
    auth=auth.OPERATE,
    summary="Rotate a webhook's secret",
)
def webhooks_secret_rotate(request: HttpRequest, webhook_id: int) -> dict[str, Any]:
    """A new signing secret (shown once); the old one still signs beside it for the grace
    period (WEBHOOK_SECRET_GRACE_S, docs/webhooks.md)."""
    endpoint = _endpoint(webhook_id)
    secret = audited(
        request,
        action="webhook.secret_rotate",
        target=f"webhook/{webhook_id}",
        work=lambda: endpoint_secret_rotate(endpoint=endpoint),
    )
    return {"endpoint": webhook_out(endpoint), "secret": secret}


@router.delete(
    "/webhooks/{webhook_id}",
    response={204: None, **errors(404)},
    auth=auth.OPERATE,
    summary="Delete a webhook",
)
def webhooks_delete(request: HttpRequest, webhook_id: int) -> tuple[int, None]:
    """Delete the endpoint and its delivery records."""
    endpoint = _endpoint(webhook_id)
    audited(request, action="webhook.delete", target=f"webhook/{webhook_id}", work=endpoint.delete)
    return 204, None
