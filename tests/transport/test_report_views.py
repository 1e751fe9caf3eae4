"""The fight report over HTTP: who may see it, the page, the JSON and the streamed CSV, 404s."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from bosses.report import fight_report
from tests.bosses.test_report import play_won_fight

pytestmark = pytest.mark.django_db


def client_for(name: str, *, staff: bool = True, perms: tuple[str, ...] = ("view_bossencounter",)) -> Client:
    user = get_user_model().objects.create_user(name, password="pw", is_staff=staff)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=perms, content_type__app_label="bosses")
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def fight(make_boss, make_session):
    return play_won_fight(make_boss, make_session)


@pytest.fixture
def watcher():
    return client_for("watcher")


def urls(slug: str, n: int | str = 1) -> list[str]:
    base = f"/ops/bosses/{slug}/fights/{n}/"
    return [base + "report/", base + "report.json", base + "report.csv"]


def test_the_report_needs_a_staff_account_with_the_watch_permission(fight):
    boss, _, _ = fight
    anonymous = Client()
    not_staff = client_for("player", staff=False)
    staff_only = client_for("intern", perms=())
    operator = client_for("operator", perms=("operate_boss",))
    for url in urls(boss.slug):
        for client in (anonymous, not_staff):
            resp = client.get(url)
            assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/"), url
        resp = staff_only.get(url)
        assert resp.status_code == 403 and b"bosses.view_bossencounter" in resp.content, url
        assert operator.get(url).status_code == 200, url  # operating includes watching


def test_page_shows_summary_charts_marks_and_tables(fight, watcher):
    boss, _, us = fight
    resp = watcher.get(urls(boss.slug)[0])
    body = resp.content.decode()
    assert resp.status_code == 200 and resp.templates[0].name == "report/fight.html"
    assert 'id="hp-chart"' in body and 'id="hp-line"' in body and 'id="shard-chart"' in body
    assert body.count('class="phase-mark-g"') == 3 and 'data-phase="Frenzy"' in body
    assert 'class="saga-mark-g" data-kind="crash" data-shard="us-1" data-amount="500"' in body
    assert '<tr data-player="alice" data-damage="5000">' in body and "5,000" in body
    assert '<tr data-shard="us-1" data-damage="2500">' in body and "23.8%" in body
    assert '<tr data-tier="champion" data-players="1">' in body
    assert 'id="kpi-damage"' in body and "10,000" in body and "js/report.js" in body
    assert f'href="/ops/bosses/{boss.slug}/fights/1/report.csv"' in body
    assert "cdn" not in body.lower() and "https://" not in body  # everything is served here


def test_json_is_the_selector_output(fight, watcher):
    boss, _, _ = fight
    resp = watcher.get(urls(boss.slug)[1])
    assert resp.status_code == 200 and resp["Content-Type"] == "application/json"
    data = resp.json()
    assert data == json.loads(json.dumps(fight_report(boss=boss, fight=1)))
    assert data["summary"]["total_damage"] == 10_000
    assert watcher.get(urls(boss.slug)[1] + "?top=1").json()["leaderboard"]["rows"] == [
        {"rank": 1, "name": "alice", "damage": 5_000}
    ]


def test_csv_streams_one_row_per_time_bucket(fight, watcher):
    boss, _, _ = fight
    resp = watcher.get(urls(boss.slug)[2])
    assert resp.status_code == 200 and resp.streaming
    assert resp["Content-Type"].startswith("text/csv")
    assert resp["Content-Disposition"] == 'attachment; filename="ashen-fight-1-report.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(resp.streaming_content).decode())))
    header, body = rows[0], rows[1:]
    assert header[:10] == [
        "bucket",
        "start_s",
        "end_s",
        "ticks",
        "applied",
        "overkill",
        "accepted",
        "hp_end",
        "hp_end_pct",
        "marks",
    ]
    assert header[10:] == ["shard:eu-1", "shard:us-1"]
    report = fight_report(boss=boss, fight=1)
    assert len(body) == len(report["shards"]["buckets"])
    assert sum(int(r[4]) for r in body) == 10_000 and sum(int(r[6]) for r in body) == 10_500
    assert sum(int(r[10]) for r in body) == 8_000 and sum(int(r[11]) for r in body) == 2_500
    assert body[-1][7] == "0" and body[-1][8] == "0.00"
    marks = "; ".join(r[9] for r in body)
    assert "crash:us-1:fair:500" in marks and "phase:Last stand" in marks and "status:defeated" in marks


def test_unknown_boss_or_fight_is_a_clear_404(fight, make_boss, watcher):
    boss, _, _ = fight
    draft = make_boss(slug="sleeping-drake")
    cases = [
        ("no-such-boss", 1, "no boss with slug"),
        (boss.slug, 2, "has no fight 2"),
        (boss.slug, 0, "is not a fight number"),
        (boss.slug, "abc", "is not a fight number"),
        (boss.slug, "01", "is not a fight number"),
        (draft.slug, 1, "no archived event yet"),
    ]
    for slug, n, text in cases:
        page, data, table = urls(slug, n)
        resp = watcher.get(page)
        assert resp.status_code == 404 and text in resp.content.decode(), (slug, n)
        assert "[unknown_boss]" in resp.content.decode()
        resp = watcher.get(data)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "unknown_boss"
        assert text in resp.json()["error"]["message"]
        assert watcher.get(table).status_code == 404


def test_the_ops_boss_page_links_its_report(fight, watcher):
    boss, _, _ = fight
    body = watcher.get(f"/ops/bosses/{boss.slug}/").content.decode()
    assert f'id="report-link" href="/ops/bosses/{boss.slug}/fights/1/report/"' in body
