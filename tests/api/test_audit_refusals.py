"""Every write call of a known key is in the audit trail, refused or not: refused by scope
(403), by size (413), as unparsable or invalid text (400), by the schema (422), for an unknown
boss (404), and by the endpoint's service (409); once per call. A call without a valid key
(401) is not recorded (api/trail.py says why)."""

from __future__ import annotations

import pytest

from tests.api.test_keys import ENDPOINTS

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

ACTIONS = {
    ("POST", "/bosses"): ("boss.create", "boss/n-1"),
    ("PATCH", "/bosses/nope"): ("boss.update", "boss/nope"),
    ("PUT", "/bosses/nope/schedule"): ("boss.schedule", "boss/nope"),
    ("POST", "/bosses/nope/go-live"): ("boss.go_live", "boss/nope"),
    ("POST", "/bosses/nope/pause"): ("boss.pause", "boss/nope"),
    ("POST", "/bosses/nope/resume"): ("boss.resume", "boss/nope"),
    ("POST", "/bosses/nope/end"): ("boss.end", "boss/nope"),
    ("POST", "/rewards/999999/claim"): ("reward.claim", "reward/999999"),
    ("POST", "/shards"): ("shard.create", "shard/Bad Key"),
    ("POST", "/shards/nope/token"): ("shard.token_rotate", "shard/nope"),
    ("POST", "/shards/nope/retire"): ("shard.retire", "shard/nope"),
    ("POST", "/webhooks"): ("webhook.create", "webhook/n"),
    ("PATCH", "/webhooks/999999"): ("webhook.update", "webhook/999999"),
    ("POST", "/webhooks/999999/secret"): ("webhook.secret_rotate", "webhook/999999"),
    ("DELETE", "/webhooks/999999"): ("webhook.delete", "webhook/999999"),
    ("POST", "/reward-tables"): ("reward_table.create", "reward_table/nope"),
    ("PUT", "/reward-tables/nope"): ("reward_table.replace", "reward_table/nope"),
    ("DELETE", "/reward-tables/nope"): ("reward_table.delete", "reward_table/nope"),
}


def _trail():
    from audit.models import AuditEntry

    rows = AuditEntry.objects.exclude(action="apikey.create").order_by("id")  # the fixtures' keys
    return list(rows.values_list("actor", "action", "target", "outcome"))


def _prefix(key: str) -> str:
    return key.split("_")[1]


def test_writes_refused_for_the_scope_are_recorded(api, make_key):
    key = make_key("read")
    actor = f"apikey:{_prefix(key)}"
    writes = [(m, p, b) for m, p, b, scope in ENDPOINTS if scope != "read"]
    for method, path, body in writes:
        reply = api.call(method, path, key=key, body=body)
        assert (reply.status, reply.code) == (403, "forbidden"), (path, reply)
    reads = [(m, p) for m, p, _, scope in ENDPOINTS if scope == "read"]
    for method, path in reads:
        assert api.call(method, path, key=key).status in (200, 404)
    expected = [(actor, *ACTIONS[(m, p)], "forbidden") for m, p, b in writes if (m, p) in ACTIONS]
    assert len(expected) == 18
    assert _trail() == expected  # the reads and the rewards feed (a read) are not


def test_invalid_writes_are_recorded_once_with_their_code(api, key):
    from audit.models import AuditEntry

    actor = f"apikey:{_prefix(key)}"
    calls = [
        ("POST", "/bosses", {"name": "N", "slug": "n-1", "max_hp": 0}, None, 422, "invalid", "boss/n-1"),
        ("POST", "/bosses", None, b"{not json", 400, "malformed", "bosses"),
        ("POST", "/bosses", {"name": "x\u0000", "slug": "n-\u0000"}, None, 400, "malformed", "boss/n-\ufffd"),
        ("POST", "/bosses", None, b'{"slug": "big"' + b" " * 70_000 + b"}", 413, "too_large", "bosses"),
        ("PATCH", "/bosses/nope", {"max_hp": "many"}, None, 422, "invalid", "boss/nope"),
        (
            "PUT",
            "/bosses/nope/schedule",
            {"starts_at": None, "ends_at": None},
            None,
            404,
            "unknown_boss",
            "boss/nope",
        ),
        ("POST", "/rewards/999999/claim", {"claim_id": ""}, None, 422, "invalid", "reward/999999"),
        ("POST", "/rewards/abc/claim", {"claim_id": "c"}, None, 422, "invalid", "reward/abc"),
    ]
    expected = []
    for method, path, body, raw, status, code, target in calls:
        reply = api.call(method, path, key=key, body=body, raw=raw)
        assert (reply.status, reply.code) == (status, code), (path, reply)
        action = ACTIONS.get((method, path), ("reward.claim",))[0]
        expected.append((actor, action, target, code))
    assert _trail() == expected
    first = AuditEntry.objects.exclude(action="apikey.create").order_by("id").first()
    assert first.detail["field"] == "max_hp" and first.address == "127.0.0.1"
    # a service's refusal (409) and a success: one entry each, as the endpoint records them
    assert api.post("/bosses", key=key, body={"name": "D", "slug": "d-1", "max_hp": 10}).status == 201
    assert api.post("/bosses/d-1/pause", key=key).code == "invalid_transition"
    assert _trail()[len(expected) :] == [
        (actor, "boss.create", "boss/d-1", "ok"),
        (actor, "boss.pause", "boss/d-1", "invalid_transition"),
    ]


def test_calls_without_a_valid_key_are_not_recorded(api):
    for headers in ({}, {"Authorization": "Bearer wbk_00000000_nope"}):
        reply = api.call("POST", "/bosses", headers=headers, body={"name": "N", "slug": "n", "max_hp": 1})
        assert reply.status == 401, reply
    assert _trail() == []
