"""Shards through the API: create (the token shown once), read, list, rotate the token,
retire; scoped keys (read cannot write), every write audited without the token."""

from __future__ import annotations

import pytest

from core.errors import Unauthorized

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def test_a_backend_manages_its_shards(api, make_key):
    from audit.models import AuditEntry
    from shards.services import shard_authenticate

    operate, read = make_key("operate", "read"), make_key("read")
    body = {"key": "eu-9", "name": "Europe 9", "region": "eu"}
    assert api.post("/shards", key=read, body=body).status == 403
    created = api.post("/shards", key=operate, body=body)
    assert created.status == 201, created
    token = created.body["token"]
    assert created.body["shard"]["kind"] == "game_server" and created.body["shard"]["status"] == "online"
    assert shard_authenticate(shard_key="eu-9", token=token).key == "eu-9"
    assert api.post("/shards", key=operate, body=body).code == "invalid"  # exists already
    assert api.post("/shards", key=operate, body={"key": "Bad Key"}).code == "invalid"

    assert api.get("/shards/eu-9", key=read).body["name"] == "Europe 9"
    assert "token" not in api.get("/shards/eu-9", key=read).body
    assert [s["key"] for s in api.get("/shards", key=read).body["items"]] == ["eu-9"]
    assert api.get("/shards/nope", key=read).code == "not_found"

    rotated = api.post("/shards/eu-9/token", key=operate)
    assert rotated.status == 200 and rotated.body["token"] != token
    with pytest.raises(Unauthorized):
        shard_authenticate(shard_key="eu-9", token=token)  # the old token stops at once
    assert shard_authenticate(shard_key="eu-9", token=rotated.body["token"]).key == "eu-9"

    retired = api.post("/shards/eu-9/retire", key=operate)
    assert retired.status == 200 and retired.body["shard"]["status"] == "retired", retired
    assert retired.body["sessions_fenced"] == 0

    rows = list(AuditEntry.objects.filter(action__startswith="shard.").order_by("id"))
    assert [(r.action, r.outcome) for r in rows] == [
        ("shard.create", "forbidden"),
        ("shard.create", "ok"),
        ("shard.create", "invalid"),
        ("shard.create", "invalid"),
        ("shard.token_rotate", "ok"),
        ("shard.retire", "ok"),
    ]
    for r in rows:
        assert token not in str(r.detail) and rotated.body["token"] not in str(r.detail)
