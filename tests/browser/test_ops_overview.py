"""``/ops/`` with 500 bosses in headless Chromium: one socket, one summary of every boss per
second, rows updated in place (HP, DPS, shard health), a boss created later shows up."""

from __future__ import annotations

import pytest

from bosses.models import BossEncounter
from bosses.sagas.crash import session_fence
from bosses.services import boss_go_live, boss_tick
from tests.browser.support import SCREENSHOT_DIR, staff_session_cookie
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BOSSES = 500

# Record every WebSocket the page opens (the overview must need exactly one).
COUNT_SOCKETS = """
window.__sockets = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.__sockets.push(String(args[0])); }
};
"""


def row_text(page, slug: str, field: str) -> str:
    return page.eval_on_selector(f'tr[data-slug="{slug}"] [data-f="{field}"]', "el => el.textContent")


def test_overview_of_500_bosses_is_live_on_one_socket(asgi_server, browser, make_session):
    BossEncounter.objects.bulk_create(
        BossEncounter(
            name=f"Boss {i:03d}",
            slug=f"b{i:03d}",
            max_hp=100_000 + i,
            heartbeat_interval_ms=20_000,  # shards stay "ok" however long the page takes
            heartbeat_timeout_ms=60_000,
        )
        for i in range(BOSSES)
    )
    bosses = list(BossEncounter.objects.order_by("name"))
    for boss in bosses:
        boss_go_live(boss=boss)
    hit, crashed = bosses[250], bosses[499]
    eu, us = make_session("eu-1"), make_session("us-1")
    heartbeat_record(boss_id=hit.pk, shard_key="eu-1", epoch=eu.epoch, pending=0)
    heartbeat_record(boss_id=crashed.pk, shard_key="us-1", epoch=us.epoch, pending=0)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    context.add_init_script(COUNT_SOCKETS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{asgi_server}/ops/")
    assert page.locator("#bosses tbody tr[data-slug]").count() == BOSSES  # rendered by the server
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=10_000)
    # the first summary comes at once, then the feed's; DPS needs a sample before the damage
    page.wait_for_function("() => window.__overview.messages >= 3", timeout=10_000)
    assert row_text(page, hit.slug, "status") == "live"
    assert row_text(page, hit.slug, "shards").replace(" ", "") == "1/0/0/0"

    # damage applied to one boss of 500: its row's HP bar and DPS move, nobody else's
    delta_ingest(boss_id=hit.pk, shard_key="eu-1", epoch=eu.epoch, seq=1, amount=40_000)
    out = boss_tick(boss_id=hit.pk, force=True)
    page.wait_for_function(
        f"() => document.querySelector('tr[data-slug=\"{hit.slug}\"] [data-f=hp]').dataset.hp === '{out.hp}'",
        timeout=10_000,
    )
    width = page.eval_on_selector(f'tr[data-slug="{hit.slug}"] [data-f=hp] .fill', "el => el.style.width")
    assert width.startswith("60.0")  # 60,250 of 100,250 HP
    page.wait_for_function(
        f"() => !['—', '0'].includes(document.querySelector('tr[data-slug=\"{hit.slug}\"] [data-f=dps]').textContent)",
        timeout=10_000,
    )
    assert row_text(page, bosses[0].slug, "version") == "1"

    # a crash saga fences a shard of another boss: that row turns red
    session_fence(boss=crashed, shard_key="us-1", epoch=us.epoch)
    page.wait_for_selector(f'tr[data-slug="{crashed.slug}"].health-crashed', timeout=10_000)
    assert row_text(page, crashed.slug, "shards").replace(" ", "") == "0/0/1/0"

    # a boss created while the page is open appears without a reload
    late = BossEncounter.objects.create(name="Zz Latecomer", slug="zz-latecomer", max_hp=5_000)
    page.wait_for_selector('tr[data-slug="zz-latecomer"]', timeout=10_000)
    assert row_text(page, late.slug, "status") == "draft"
    assert page.locator("#bosses tbody tr[data-slug]").count() == BOSSES + 1

    # all of it over one socket
    assert page.evaluate("window.__sockets.map(u => new URL(u).pathname)") == ["/ws/ops/"]
    page.screenshot(path=str(SCREENSHOT_DIR / "ops-overview-500.png"))
    assert not errors, errors
