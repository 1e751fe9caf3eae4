"""The OpenAPI document: every endpoint and the error schema, and the reviewed copy is current."""

from __future__ import annotations

import json

import pytest

from tests.support.processes import ROOT

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

ENDPOINTS = {
    ("get", "/api/v1/bosses"),
    ("post", "/api/v1/bosses"),
    ("get", "/api/v1/bosses/{slug}"),
    ("patch", "/api/v1/bosses/{slug}"),
    ("put", "/api/v1/bosses/{slug}/schedule"),
    ("post", "/api/v1/bosses/{slug}/go-live"),
    ("post", "/api/v1/bosses/{slug}/pause"),
    ("post", "/api/v1/bosses/{slug}/resume"),
    ("post", "/api/v1/bosses/{slug}/end"),
    ("get", "/api/v1/bosses/{slug}/fights/{fight}/results"),
    ("get", "/api/v1/bosses/{slug}/fights/{fight}/leaderboard"),
    ("get", "/api/v1/bosses/{slug}/fights/{fight}/players/{player}"),
    ("get", "/api/v1/bosses/{slug}/fights/{fight}/timeline"),
    ("get", "/api/v1/rewards"),
    ("post", "/api/v1/rewards/{grant_id}/claim"),
    ("get", "/api/v1/bosses/{slug}/fights/{fight}/config"),
    ("get", "/api/v1/templates"),
    ("post", "/api/v1/templates"),
    ("get", "/api/v1/templates/{slug}"),
    ("patch", "/api/v1/templates/{slug}"),
    ("post", "/api/v1/templates/{slug}/bosses"),
    ("get", "/api/v1/spawns"),
    ("get", "/api/v1/bosses/{slug}/spawns"),
    ("get", "/api/v1/bosses/{slug}/schedules"),
    ("post", "/api/v1/bosses/{slug}/schedules"),
    ("patch", "/api/v1/schedules/{schedule_id}"),
    ("get", "/api/v1/schedules/{schedule_id}/occurrences"),
    ("get", "/api/v1/shards"),
    ("post", "/api/v1/shards"),
    ("get", "/api/v1/shards/{key}"),
    ("post", "/api/v1/shards/{key}/token"),
    ("post", "/api/v1/shards/{key}/retire"),
    ("get", "/api/v1/webhooks"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{webhook_id}"),
    ("patch", "/api/v1/webhooks/{webhook_id}"),
    ("delete", "/api/v1/webhooks/{webhook_id}"),
    ("post", "/api/v1/webhooks/{webhook_id}/secret"),
    ("get", "/api/v1/reward-tables"),
    ("post", "/api/v1/reward-tables"),
    ("get", "/api/v1/reward-tables/{name}"),
    ("put", "/api/v1/reward-tables/{name}"),
    ("delete", "/api/v1/reward-tables/{name}"),
}


def test_served_document_lists_every_endpoint_and_the_error_schema(api):
    reply = api.get("/openapi.json")
    assert reply.status == 200
    doc = reply.body
    served = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == ENDPOINTS
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(doc["components"]["schemas"]["ErrorDetail"]["properties"]) == {"code", "detail", "field"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("security"), (method, path)  # every endpoint needs a key
            for status in ("401", "403", "422"):
                ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/Error"), (method, path, status)
    assert doc["components"]["securitySchemes"]["ScopedKey"]["scheme"] == "bearer"
    assert api.get("/docs").status == 200


def test_checked_in_copy_matches_the_server(api):
    """docs/openapi.json is reviewed with every API change: regenerate it with
    ``manage.py api_openapi --output docs/openapi.json``."""
    served = api.get("/openapi.json").body
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == checked_in, (
        "docs/openapi.json is stale: run manage.py api_openapi --output docs/openapi.json"
    )
