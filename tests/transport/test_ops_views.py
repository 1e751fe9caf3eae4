"""Dashboard and player pages over HTTP: staff login, confirmed actions through the services."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from bosses.selectors import boss_state
from shards.services import shard_create

pytestmark = pytest.mark.django_db


def operator(name: str):
    """A staff account with the operator's permissions (staff alone is not a role)."""
    user = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=("operate_boss", "view_bossencounter"), content_type__app_label="bosses"
        )
    )
    return user


@pytest.fixture
def staff_client():
    user = operator("ops")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def player_client():
    user = get_user_model().objects.create_user("player", password="pw")
    client = Client()
    client.force_login(user)
    return client


def test_ops_pages_need_a_staff_login(live_boss, player_client):
    for url in ("/ops/", f"/ops/bosses/{live_boss.slug}/", f"/ops/bosses/{live_boss.slug}/pause/"):
        for client in (Client(), player_client):
            resp = client.get(url)
            assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/"), url
    resp = Client().post(f"/ops/bosses/{live_boss.slug}/pause/", {"confirm": "yes"})
    assert resp.status_code == 302 and boss_state(boss_id=live_boss.pk).status == "live"


def test_index_and_dashboard_render_live_state(live_boss, make_boss, staff_client):
    make_boss(name="Sleeping Drake")
    resp = staff_client.get("/ops/")
    body = resp.content.decode()
    assert resp.status_code == 200 and live_boss.name in body and "Sleeping Drake" in body
    resp = staff_client.get(f"/ops/bosses/{live_boss.slug}/")
    body = resp.content.decode()
    assert resp.status_code == 200
    assert f'"/ws/ops/bosses/{live_boss.slug}/"' in body and "js/ops.js" in body
    snapshot = json.loads(
        re.search(r'<script id="ops-snapshot" type="application/json">(.*?)</script>', body, re.S).group(1)
    )
    assert snapshot["state"]["status"] == "live" and snapshot["state"]["hp"] == live_boss.max_hp
    assert snapshot["series"][0][1] == live_boss.max_hp
    assert staff_client.get("/ops/bosses/no-such-boss/").status_code == 404


def test_pause_needs_confirmation_then_goes_through_the_service(live_boss, staff_client):
    url = f"/ops/bosses/{live_boss.slug}/pause/"
    page = staff_client.get(url)
    assert page.status_code == 200 and b'name="confirm" value="yes"' in page.content
    assert staff_client.post(url).status_code == 200  # no confirmation: asked again
    assert boss_state(boss_id=live_boss.pk).status == "live"

    resp = staff_client.post(url, {"confirm": "yes"}, follow=True)
    assert resp.redirect_chain[-1][0] == f"/ops/bosses/{live_boss.slug}/"
    assert boss_state(boss_id=live_boss.pk).status == "paused"
    live_boss.refresh_from_db()
    assert live_boss.status == "paused"
    assert "is now paused" in resp.content.decode()

    # pausing again is refused by the service; the error is shown, nothing changes
    version = boss_state(boss_id=live_boss.pk).version
    resp = staff_client.post(url, {"confirm": "yes"}, follow=True)
    body = resp.content.decode()
    assert 'class="error"' in body and "invalid_transition" in body and "it is paused" in body
    assert boss_state(boss_id=live_boss.pk).version == version

    staff_client.post(f"/ops/bosses/{live_boss.slug}/resume/", {"confirm": "yes"})
    assert boss_state(boss_id=live_boss.pk).status == "live"
    staff_client.post(f"/ops/bosses/{live_boss.slug}/end/", {"confirm": "yes"})
    assert boss_state(boss_id=live_boss.pk).status == "expired"


def test_actions_need_csrf_and_known_action(live_boss):

    user = operator("ops2")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/ops/bosses/{live_boss.slug}/pause/", {"confirm": "yes"}).status_code == 403
    assert boss_state(boss_id=live_boss.pk).status == "live"
    page = client.get(f"/ops/bosses/{live_boss.slug}/pause/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client.post(f"/ops/bosses/{live_boss.slug}/pause/", {"confirm": "yes", "csrfmiddlewaretoken": token})
    assert boss_state(boss_id=live_boss.pk).status == "paused"
    resp = client.post(
        f"/ops/bosses/{live_boss.slug}/explode/", {"confirm": "yes", "csrfmiddlewaretoken": token}
    )
    assert resp.status_code == 404 and b"unknown action" in resp.content
    assert boss_state(boss_id=live_boss.pk).status == "paused"


def test_player_page_picks_a_shard_and_carries_its_config(live_boss):
    shard_create(key="eu-1", name="Europe 1", region="eu", kind="hosted")
    shard_create(key="gs-1", name="A game server")  # players cannot join a game server's shard
    client = Client()
    chooser = client.get(f"/play/{live_boss.slug}/")
    assert chooser.status_code == 200 and b"?shard=eu-1" in chooser.content
    assert b"gs-1" not in chooser.content
    assert client.get(f"/play/{live_boss.slug}/?shard=gs-1").status_code == 404
    unknown = client.get(f"/play/{live_boss.slug}/?shard=nope")
    assert unknown.status_code == 404 and b"Unknown shard" in unknown.content
    assert client.get("/play/no-such-boss/?shard=eu-1").status_code == 404

    page = client.get(f"/play/{live_boss.slug}/?shard=eu-1")
    body = page.content.decode()
    assert page.status_code == 200 and live_boss.name in body and "js/play.js" in body
    config = json.loads(
        re.search(r'<script id="play-config" type="application/json">(.*?)</script>', body, re.S).group(1)
    )
    assert config["shard"] == "eu-1" and config["shard_path"] == "/ws/shards/eu-1/"
    assert config["predicted_damage"] == live_boss.min_damage
    assert client.session.session_key  # the guest identity exists before the socket opens


def test_authority_down_is_a_clear_503_and_actions_change_nothing(live_boss, staff_client, settings):
    from core.redis import reset_clients

    live_url = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/10"  # nothing listens there
    reset_clients()
    try:
        for url in ("/ops/", f"/ops/bosses/{live_boss.slug}/"):
            resp = staff_client.get(url)
            assert resp.status_code == 503 and b"authority_unavailable" in resp.content, url
        resp = staff_client.post(f"/ops/bosses/{live_boss.slug}/pause/", {"confirm": "yes"}, follow=True)
        body = resp.content.decode()
        assert "Could not pause" in body and "authority_unavailable" in body
    finally:
        settings.REDIS_URL = live_url
        reset_clients()
    assert boss_state(boss_id=live_boss.pk).status == "live"
    live_boss.refresh_from_db()
    assert live_boss.status == "live"
