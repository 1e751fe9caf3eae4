"""API keys: hashed at rest, scoped, revocable, audited; created by command or admin."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from tests.api.conftest import ALL_SCOPES
from tests.support import processes

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

# (method, path, body, scope): one call per endpoint; the slug and grant do not exist, so an
# allowed call is answered past the key check (404/422), never with 401/403.
ENDPOINTS = [
    ("GET", "/bosses", None, "read"),
    ("GET", "/bosses/nope", None, "read"),
    ("GET", "/bosses/nope/fights/1/results", None, "read"),
    ("GET", "/bosses/nope/fights/1/leaderboard", None, "read"),
    ("GET", "/bosses/nope/fights/1/players/p1", None, "read"),
    ("GET", "/bosses/nope/fights/1/timeline", None, "read"),
    ("POST", "/bosses", {"name": "N", "slug": "n-1", "max_hp": 0}, "operate"),
    ("PATCH", "/bosses/nope", {"max_hp": 10}, "operate"),
    ("PUT", "/bosses/nope/schedule", {"starts_at": None, "ends_at": None}, "operate"),
    ("POST", "/bosses/nope/go-live", None, "operate"),
    ("POST", "/bosses/nope/pause", None, "operate"),
    ("POST", "/bosses/nope/resume", None, "operate"),
    ("POST", "/bosses/nope/end", None, "operate"),
    ("GET", "/rewards", None, "rewards"),
    ("POST", "/rewards/999999/claim", {"claim_id": "c-1"}, "rewards"),
    ("GET", "/shards", None, "read"),
    ("GET", "/shards/nope", None, "read"),
    ("POST", "/shards", {"key": "Bad Key"}, "operate"),
    ("POST", "/shards/nope/token", None, "operate"),
    ("POST", "/shards/nope/retire", None, "operate"),
    ("GET", "/webhooks", None, "operate"),
    ("GET", "/webhooks/999999", None, "operate"),
    ("POST", "/webhooks", {"name": "n", "url": "ftp://x", "events": []}, "operate"),
    ("PATCH", "/webhooks/999999", {"active": False}, "operate"),
    ("POST", "/webhooks/999999/secret", None, "operate"),
    ("DELETE", "/webhooks/999999", None, "operate"),
    ("GET", "/reward-tables", None, "read"),
    ("GET", "/reward-tables/nope", None, "read"),
    ("POST", "/reward-tables", {"name": "nope", "tiers": [{"name": "x", "kind": "rank"}]}, "operate"),
    ("PUT", "/reward-tables/nope", {"name": "nope", "tiers": []}, "operate"),
    ("DELETE", "/reward-tables/nope", None, "operate"),
]


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_each_scope_opens_its_endpoints_and_only_those(api, make_key, scope):
    key = make_key(scope)
    for method, path, body, needed in ENDPOINTS:
        reply = api.call(method, path, key=key, body=body)
        if needed == scope:
            assert reply.status not in (401, 403), (method, path, reply)
            assert reply.status in (200, 404, 422), (method, path, reply)
        else:
            assert reply.status == 403, (method, path, reply)
            assert reply.body["error"]["code"] == "forbidden"
            assert repr(needed) in reply.body["error"]["detail"]


def test_missing_malformed_unknown_and_revoked_keys_get_401(api, make_key):
    from api.models import ApiKey
    from api.services import apikey_revoke

    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        reply = api.call("GET", "/bosses", headers=headers)
        assert (reply.status, reply.code) == (401, "unauthorized"), (headers, reply)
        assert reply.headers["www-authenticate"].startswith("Bearer")
    key = make_key("read")
    good_prefix = key.split("_")[1]
    forged = f"wbk_{good_prefix}_{'A' * 43}"  # a real prefix, a wrong secret
    for bad in (forged, "wbk_00000000_secret", "nonsense", key + "x"):
        reply = api.get("/bosses", key=bad)
        assert (reply.status, reply.code) == (401, "unauthorized"), (bad, reply)
    assert api.get("/bosses", key=key).status == 200
    apikey = ApiKey.objects.get(prefix=good_prefix)
    apikey_revoke(apikey=apikey)
    reply = api.get("/bosses", key=key)
    assert (reply.status, reply.code) == (401, "unauthorized")
    assert "revoked" in reply.body["error"]["detail"]


def test_key_is_stored_hashed_and_use_is_recorded(api, make_key):
    from api.models import ApiKey

    key = make_key("read")
    prefix, secret = key.split("_", 2)[1:]
    row = ApiKey.objects.get(prefix=prefix)
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in row.key_hash and row.last_used_at is None
    assert api.get("/bosses", key=key).status == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_writes_are_audited_with_the_key_as_actor(api, make_key):
    from audit.models import AuditEntry

    key = make_key("operate")
    prefix = key.split("_")[1]
    created = api.post("/bosses", key=key, body={"name": "Audited", "slug": "audited", "max_hp": 500})
    assert created.status == 201, created
    refused = api.post("/bosses/audited/pause", key=key)
    assert (refused.status, refused.code) == (409, "invalid_transition")
    entries = list(AuditEntry.objects.filter(actor=f"apikey:{prefix}").order_by("id"))
    assert [(e.action, e.target, e.outcome) for e in entries] == [
        ("boss.create", "boss/audited", "ok"),
        ("boss.pause", "boss/audited", "invalid_transition"),
    ]
    assert all(key not in str(e.detail) for e in entries)


def test_apikey_create_command_prints_a_working_key_once(api):
    from api.models import ApiKey
    from audit.models import AuditEntry

    out = subprocess.run(
        [sys.executable, "manage.py", "apikey_create", "--name", "scripted", "--scopes", "read,rewards"],
        cwd=processes.ROOT,
        env=processes.subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    key = out.stdout.strip()
    assert key.startswith("wbk_") and "\n" not in key
    row = ApiKey.objects.get(name="scripted")
    assert row.scopes == "read,rewards" and row.key_hash not in out.stdout + out.stderr
    assert AuditEntry.objects.filter(action="apikey.create", target=f"apikey/{row.prefix}").exists()
    assert api.get("/rewards", key=key).status == 200
    assert api.post("/bosses/x/go-live", key=key).status == 403
    bad = subprocess.run(
        [sys.executable, "manage.py", "apikey_create", "--name", "x", "--scopes", "read,admin"],
        cwd=processes.ROOT,
        env=processes.subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "admin" in bad.stderr
    assert not ApiKey.objects.filter(name="x").exists()


def test_admin_creates_and_revokes_keys_only_with_the_permission(client, transactional_db):
    from django.contrib.auth.models import Permission, User

    from api.models import ApiKey
    from api.services import apikey_authenticate
    from audit.models import AuditEntry

    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(staff)
    form = {"name": "admin-made", "scopes": ["read", "operate"]}
    assert client.post("/admin/api/apikey/add/", form).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="manage_apikey"))
    response = client.post("/admin/api/apikey/add/", form, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    key = next(w for m in shown for w in m.split() if w.startswith("wbk_"))
    row = ApiKey.objects.get(name="admin-made")
    assert row.scopes == "operate,read" and apikey_authenticate(key=key) == row
    assert AuditEntry.objects.filter(
        action="apikey.create", actor="user:ops", target=f"apikey/{row.prefix}"
    ).exists()
    client.post("/admin/api/apikey/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert AuditEntry.objects.filter(
        action="apikey.revoke", actor="user:ops", target=f"apikey/{row.prefix}"
    ).exists()
