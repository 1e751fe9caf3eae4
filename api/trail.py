"""The audit trail of API writes refused before their endpoint ran (docs/api.md).

An endpoint records its own outcome (``api.routers.common.audited``). A write can also be
refused before that: the key lacks the scope (403), the body is too large (413), unparsable
or holds invalid text (400), or fails the schema (422), or the boss is unknown (404). The
error handlers (api/errors.py) call :func:`write_refusal_record` for those, once per request.
A call without a valid key (401) is not recorded: it has no actor, and recording it would let
anyone on the internet fill the trail.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest

from api.models import ApiKey
from audit.services import audit_record
from core.errors import FrameTooLarge

# request attributes: the key that authenticated (before its scope is checked), and whether
# this request's write is already in the trail
KEY_ATTR = "liveops_api_key"
RECORDED_ATTR = "liveops_audit_recorded"
API_ROUTE_PREFIX = "api/v1/"

# (method, route under /api/v1/) -> the action the endpoint records (api/routers/)
WRITE_ACTIONS: dict[tuple[str, str], str] = {
    ("POST", "bosses"): "boss.create",
    ("PATCH", "bosses/<slug>"): "boss.update",
    ("PUT", "bosses/<slug>/schedule"): "boss.schedule",
    ("POST", "bosses/<slug>/go-live"): "boss.go_live",
    ("POST", "bosses/<slug>/pause"): "boss.pause",
    ("POST", "bosses/<slug>/resume"): "boss.resume",
    ("POST", "bosses/<slug>/end"): "boss.end",
    ("POST", "rewards/<grant_id>/claim"): "reward.claim",
    ("POST", "shards"): "shard.create",
    ("POST", "shards/<key>/token"): "shard.token_rotate",
    ("POST", "shards/<key>/retire"): "shard.retire",
    ("POST", "webhooks"): "webhook.create",
    ("PATCH", "webhooks/<webhook_id>"): "webhook.update",
    ("POST", "webhooks/<webhook_id>/secret"): "webhook.secret_rotate",
    ("DELETE", "webhooks/<webhook_id>"): "webhook.delete",
    ("POST", "reward-tables"): "reward_table.create",
    ("PUT", "reward-tables/<name>"): "reward_table.replace",
    ("DELETE", "reward-tables/<name>"): "reward_table.delete",
}


# a create call's target: (the body field that names it, its kind, the collection)
CREATE_TARGETS = {
    "shard.create": ("key", "shard", "shards"),
    "webhook.create": ("name", "webhook", "webhooks"),
    "reward_table.create": ("name", "reward_table", "reward_tables"),
}


def request_key_set(request: HttpRequest, apikey: ApiKey) -> None:
    """Remember the key that authenticated ``request`` (its scope not checked yet)."""
    setattr(request, KEY_ATTR, apikey)


def request_recorded_set(request: HttpRequest) -> None:
    """This request's write is in the trail: the error handlers record nothing more."""
    setattr(request, RECORDED_ATTR, True)


def _created_slug(request: HttpRequest, name: str = "slug") -> str | None:
    """The slug (or other ``name``) a create call's body names, if it can be read at all."""
    try:
        body = json.loads(request.body)
    except Exception:  # oversized, unparsable: the target stays the collection
        return None
    slug = body.get(name) if isinstance(body, dict) else None
    return slug if isinstance(slug, str) else None


def _action_and_target(request: HttpRequest, *, read_body: bool) -> tuple[str, str] | None:
    match = request.resolver_match
    if match is None or not match.route.startswith(API_ROUTE_PREFIX):
        return None
    action = WRITE_ACTIONS.get((request.method or "", match.route.removeprefix(API_ROUTE_PREFIX)))
    if action is None:
        return None
    for kwarg, kind in (
        ("grant_id", "reward"),
        ("slug", "boss"),
        ("key", "shard"),
        ("webhook_id", "webhook"),
        ("name", "reward_table"),
    ):
        if kwarg in match.kwargs:
            return action, f"{kind}/{match.kwargs[kwarg]}"
    # a create call: its target is what its body names, else the collection
    field, kind, collection = CREATE_TARGETS.get(action, ("slug", "boss", "bosses"))
    name = _created_slug(request, field) if read_body else None
    return action, f"{kind}/{name}" if name else collection


def write_refusal_record(request: HttpRequest, *, code: str, detail: str, field: str | None = None) -> None:
    """Record a refused write call of an authenticated key, unless its endpoint already did."""
    apikey = getattr(request, KEY_ATTR, None)
    if not isinstance(apikey, ApiKey) or getattr(request, RECORDED_ATTR, False):
        return
    # an oversized body is not read for its slug
    found = _action_and_target(request, read_body=code != FrameTooLarge.code)
    if found is None:
        return
    action, target = found
    extra: dict[str, Any] = {"error": detail}
    if field:
        extra["field"] = field
    request_recorded_set(request)
    audit_record(
        actor=apikey.actor, action=action, target=target, outcome=code, detail=extra, request=request
    )
