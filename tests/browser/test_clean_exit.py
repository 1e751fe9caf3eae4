"""Headless Chromium: a game server that left cleanly (``bye``, saga reason ``left``) is shown
as "left", not as a red crash, on the boss's dashboard, the ``/ops/`` overview and the fight
report (docs/dashboard.md, docs/report.md)."""

from __future__ import annotations

import re

import pytest

from bosses.sagas.crash import session_end
from bosses.services import boss_go_live, boss_tick, event_log_archive
from tests.browser.support import SCREENSHOT_DIR, staff_session_cookie
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def not_red(css_colour: str) -> bool:
    """True unless the colour is the crashed row's red tint (red well above green and blue)."""
    r, g, b = (int(x) for x in re.findall(r"\d+", css_colour)[:3])
    return not (r > g + 40 and r > b + 40)


def test_a_clean_exit_shows_as_left_everywhere(asgi_server, browser, make_boss, make_session):
    boss = make_boss(
        name="Quiet Golem",
        slug="quiet-golem",
        max_hp=100_000,
        heartbeat_interval_ms=20_000,
        heartbeat_timeout_ms=60_000,
    )
    boss_go_live(boss=boss)
    eu, us = make_session("eu-1"), make_session("us-1")
    for s, amount in ((eu, 3_000), (us, 2_000)):
        delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=amount)
    heartbeat_record(boss_id=boss.pk, shard_key="us-1", epoch=us.epoch, pending=0)
    boss_tick(boss_id=boss.pk, force=True)
    # eu-1's game server stops cleanly: bye, nothing held, the saga records reason "left"
    assert session_end(shard_key="eu-1", epoch=eu.epoch, reason="left") == {boss.slug: 0}
    event_log_archive(boss=boss)

    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    # the dashboard: eu-1's row is "left" and not red; the counts say 1 left, 0 crashed
    page.goto(f"{asgi_server}/ops/bosses/{boss.slug}/")
    page.wait_for_selector('#shards tr[data-shard="eu-1"].health-left', timeout=10_000)
    row = page.eval_on_selector(
        '#shards tr[data-shard="eu-1"]',
        "tr => ({badge: tr.querySelector('.badge').textContent,"
        " bg: getComputedStyle(tr.querySelector('td')).backgroundColor})",
    )
    assert row["badge"] == "left" and not_red(row["bg"]), row
    assert page.locator("#shards tr.health-crashed").count() == 0
    assert page.text_content("#k-shards") == "1/1"
    hint = page.text_content("#k-shards-hint")
    assert "0 crashed" in hint and "1 left" in hint, hint
    assert "bad" not in (page.get_attribute("#kc-shards", "class") or "")
    # the saga that ended the session is listed by its ending
    page.wait_for_selector("#sagas td b:text-is('left')", timeout=5_000)
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-left.png"), full_page=True)

    # the overview: ok / late / crashed / left, and the row is not marked crashed
    page.goto(f"{asgi_server}/ops/")
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=10_000)
    page.wait_for_function("() => window.__overview.messages >= 1", timeout=10_000)
    cells = page.eval_on_selector(
        f'tr[data-slug="{boss.slug}"]',
        "tr => ({shards: tr.querySelector('[data-f=shards]').textContent.replace(/\\s/g, ''),"
        " crashed: tr.classList.contains('health-crashed')})",
    )
    assert cells == {"shards": "1/0/0/1", "crashed": False}, cells

    # the report: no crash, one session that left cleanly, its saga row named "left"
    page.goto(f"{asgi_server}/ops/bosses/{boss.slug}/fights/1/report/")
    assert page.text_content("#kpi-crashes .value").strip() == "0"
    assert "1 left cleanly" in page.text_content("#kpi-crashes .hint")
    assert page.text_content('#sagas tr[data-shard="eu-1"] td:nth-child(2)') == "left"
    assert page.locator('#hp-chart .saga-mark-g[data-kind="crash"]').count() == 0
    assert page.locator('#hp-chart .saga-mark-g[data-kind="left"]').count() == 1
    page.screenshot(path=str(SCREENSHOT_DIR / "report-left.png"), full_page=True)
    assert not errors, errors
