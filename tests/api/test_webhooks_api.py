"""Webhook endpoints through the API: create (the secret shown once), read, list, change,
rotate the secret, delete; operate scope, every write audited without a secret."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def test_a_backend_manages_its_webhook_endpoints(api, make_key, make_boss):
    from audit.models import AuditEntry
    from webhooks.models import WebhookEndpoint

    make_boss(slug="hooked")
    operate, read = make_key("operate"), make_key("read")
    body = {"name": "game backend", "url": "https://game.example/hooks", "events": ["boss.defeated"]}
    assert api.post("/webhooks", key=read, body=body).status == 403
    created = api.post("/webhooks", key=operate, body={**body, "boss": "hooked"})
    assert created.status == 201, created
    hook, secret = created.body["endpoint"], created.body["secret"]
    assert secret.startswith("whsec_") and WebhookEndpoint.objects.get(pk=hook["id"]).secret == secret
    assert (hook["boss"], hook["events"], hook["active"]) == ("hooked", ["boss.defeated"], True)
    bad = api.post("/webhooks", key=operate, body={**body, "events": ["boss.nope"]})
    assert (bad.code, bad.body["error"].get("field")) == ("invalid", "events"), bad
    assert api.post("/webhooks", key=operate, body={**body, "url": "ftp://x"}).code == "invalid"
    assert api.post("/webhooks", key=operate, body={**body, "boss": "nope"}).status == 404

    path = f"/webhooks/{hook['id']}"
    assert api.get(path, key=operate).body == hook
    assert "secret" not in api.get(path, key=operate).body
    assert [h["id"] for h in api.get("/webhooks", key=operate).body["items"]] == [hook["id"]]
    changed = api.call("PATCH", path, key=operate, body={"active": False, "boss": None})
    assert changed.status == 200 and (changed.body["active"], changed.body["boss"]) == (False, None)
    rotated = api.post(f"{path}/secret", key=operate)
    assert rotated.status == 200 and rotated.body["secret"] not in (secret, "")
    assert WebhookEndpoint.objects.get(pk=hook["id"]).previous_secret == secret  # signs beside it
    assert api.call("DELETE", path, key=operate).status == 204
    assert api.get(path, key=operate).code == "not_found"

    rows = list(AuditEntry.objects.filter(action__startswith="webhook.").order_by("id"))
    assert [(r.action, r.outcome) for r in rows] == [
        ("webhook.create", "forbidden"),
        ("webhook.create", "ok"),
        ("webhook.create", "invalid"),
        ("webhook.create", "invalid"),
        ("webhook.create", "unknown_boss"),
        ("webhook.update", "ok"),
        ("webhook.secret_rotate", "ok"),
        ("webhook.delete", "ok"),
    ]
    for r in rows:
        assert secret not in str(r.detail) and rotated.body["secret"] not in str(r.detail)
