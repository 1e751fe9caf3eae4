"""The home page links players to the player page and staff to the dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


def test_home_links_play_and_dashboard_for_staff_only(live_boss):
    anonymous = Client().get("/").content.decode()
    assert f"/play/{live_boss.slug}/" in anonymous and f"/ops/bosses/{live_boss.slug}/" not in anonymous
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops", password="pw", is_staff=True))
    assert f"/ops/bosses/{live_boss.slug}/" in staff.get("/").content.decode()
