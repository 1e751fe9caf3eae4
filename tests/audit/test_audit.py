"""The audit trail: who did what, refused attempts included, visible (read-only) in the admin."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from bosses.selectors import boss_state
from shards.services import shard_create
from tests.transport.test_permissions import (
    OPERATOR,
    SHARD_MANAGER,
    VIEWER,
    account,
    admin_action,
    client_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def test_admin_and_ops_actions_are_recorded_with_their_actor(live_boss):
    operator = client_for(account("olga", OPERATOR))
    admin_action(operator, "bosses/bossencounter", "pause", live_boss.pk)
    assert boss_state(boss_id=live_boss.pk).status == "paused"
    # refused by the authority (already paused): recorded with the error code
    admin_action(operator, "bosses/bossencounter", "pause", live_boss.pk)
    assert operator.post(f"/ops/bosses/{live_boss.slug}/resume/", {"confirm": "yes"}).status_code == 302
    rows = list(AuditEntry.objects.order_by("id").values_list("actor", "action", "target", "outcome"))
    target = f"boss/{live_boss.slug}"
    assert rows == [
        ("user:olga", "boss.pause", target, "ok"),
        ("user:olga", "boss.pause", target, "invalid_transition"),
        ("user:olga", "boss.resume", target, "ok"),
    ]
    entry = AuditEntry.objects.order_by("id").last()
    assert entry.user.username == "olga" and entry.address == "127.0.0.1"
    assert entry.detail["version"] >= 1


def test_a_refused_attempt_by_a_view_only_user_is_recorded(live_boss):
    viewer = client_for(account("vic", VIEWER))
    assert viewer.post(f"/ops/bosses/{live_boss.slug}/end/", {"confirm": "yes"}).status_code == 403
    assert boss_state(boss_id=live_boss.pk).status == "live"
    [entry] = AuditEntry.objects.all()
    assert (entry.actor, entry.action, entry.outcome) == ("user:vic", "ops.ops_boss_action", "forbidden")
    assert entry.target == f"/ops/bosses/{live_boss.slug}/end/"


def test_shard_token_actions_are_recorded_without_the_token():
    shard, _ = shard_create(key="au-1", name="AU")
    manager = client_for(account("max", SHARD_MANAGER))
    body = admin_action(manager, "shards/shard", "rotate_token", shard.pk).content.decode()
    assert "new token" in body
    [entry] = AuditEntry.objects.all()
    assert (entry.actor, entry.action, entry.target) == ("user:max", "shard.rotate_token", "shard/au-1")
    token = body.split("new token ")[1].split(" ")[0]
    assert token not in str(entry.detail) and token not in str(entry)


def test_the_trail_is_visible_and_read_only_in_the_admin(live_boss, admin_client):
    operator = client_for(account("ola", OPERATOR))
    admin_action(operator, "bosses/bossencounter", "pause", live_boss.pk)
    entry = AuditEntry.objects.get()
    page = admin_client.get("/admin/audit/auditentry/")
    assert page.status_code == 200 and "user:ola" in page.content.decode()
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
    admin_client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"})
    admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"actor": "someone-else"})
    assert AuditEntry.objects.get().actor == "user:ola"
