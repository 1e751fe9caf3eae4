"""Headless Chromium against a live uvicorn: the dashboard falls live, the player predicts.

Ticks are driven by this test through the real service (boss_tick publishes on Redis and
the server's fan-out hub pushes to the pages), so each step is deterministic; the
end-to-end test (tests/e2e) runs the same flow with a real Celery worker and beat.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from bosses.sagas.crash import session_fence
from bosses.selectors import boss_state
from bosses.services import boss_go_live, boss_tick
from core import keys
from core.redis import get_redis
from tests.browser.support import SCREENSHOT_DIR, staff_session_cookie
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def bar(page) -> dict:
    return page.eval_on_selector(
        "#hpbar",
        "el => ({hp: +el.dataset.hp, truth: +el.dataset.truth, "
        "version: +el.dataset.version, pending: +(el.dataset.pending || 0)})",
    )


def test_dashboard_hp_falls_live_and_crashed_shard_turns_red(asgi_server, browser, make_boss, make_session):
    boss = make_boss(name="Ashen Colossus", slug="ashen-colossus", max_hp=200_000)
    boss_go_live(boss=boss)
    eu, us = make_session("eu-1"), make_session("us-1")
    heartbeat_record(boss_id=boss.pk, shard_key="us-1", epoch=us.epoch, pending=250)
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{asgi_server}/ops/bosses/{boss.slug}/")
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=10_000)
    assert bar(page)["truth"] == 200_000

    # record what the bar draws on every animation frame
    page.evaluate("""() => { window.__drawn = []; const rec = () => {
        window.__drawn.push(+document.getElementById('hpbar').dataset.hp); requestAnimationFrame(rec); };
        requestAnimationFrame(rec); }""")
    seen = []
    for seq, amount in enumerate((12_000, 30_000, 8_000), start=1):
        delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=eu.epoch, seq=seq, amount=amount)
        out = boss_tick(boss_id=boss.pk, force=True)
        page.wait_for_function(
            f"() => +document.getElementById('hpbar').dataset.truth === {out.hp}", timeout=5_000
        )
        seen.append(bar(page)["truth"])
        page.wait_for_function(
            f"() => +document.getElementById('hpbar').dataset.hp === {out.hp}", timeout=5_000
        )
    assert seen == [188_000, 158_000, 150_000]
    drawn = page.evaluate("window.__drawn")
    # interpolated, not jumped: frames strictly between two truths, and never below the truth
    assert any(158_000 < v < 188_000 for v in drawn) and min(drawn) == 150_000
    assert drawn == sorted(drawn, reverse=True)
    # the bar eases to the truth, and the chart got one point per tick
    page.wait_for_function("() => +document.getElementById('hpbar').dataset.hp === 150000", timeout=5_000)
    assert page.evaluate("window.__ops.chart.points.length") >= 4
    assert page.text_content("#version") == str(boss_state(boss_id=boss.pk).version)

    # the feed drops: the page reconnects on its own and resyncs (a tick lands meanwhile)
    page.evaluate("window.__ops.socket.drop()")
    delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=eu.epoch, seq=4, amount=1_000)
    out = boss_tick(boss_id=boss.pk, force=True)
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=10_000)
    page.wait_for_function(
        f"() => +document.getElementById('hpbar').dataset.truth === {out.hp}", timeout=5_000
    )

    # a crash saga fences us-1: its row turns red on the next refresh, the saga is listed
    session_fence(boss=boss, shard_key="us-1", epoch=us.epoch)
    page.wait_for_selector('#shards tr[data-shard="us-1"].health-crashed', timeout=5_000)
    # query and read in one evaluation: every refresh re-renders the table, and a detached
    # cell has no computed style
    red = page.eval_on_selector(
        '#shards tr[data-shard="us-1"].health-crashed td', "td => getComputedStyle(td).backgroundColor"
    )
    r, g, b = (int(x) for x in re.findall(r"\d+", red)[:3])
    assert r > g and r > b, red
    page.wait_for_selector("#sagas td:has-text('crash')", timeout=5_000)
    assert "eu-1" in page.text_content('#shards tr[data-shard="eu-1"]')
    assert "51,000" in page.text_content('#shards tr[data-shard="eu-1"]')  # its contribution
    page.wait_for_function("() => document.getElementById('k-dps').textContent !== '—'", timeout=5_000)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard.png"), full_page=True)

    # pause through the confirmation dialog: the status changes in Redis and on the page
    page.click('#actions [data-action="pause"]')
    assert page.is_visible("#confirm")
    page.click("#confirm-go")
    page.wait_for_selector(".messages .success", timeout=5_000)
    assert boss_state(boss_id=boss.pk).status == "paused"
    page.wait_for_function("() => document.getElementById('status').textContent === 'paused'", timeout=5_000)
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-paused.png"), full_page=True)
    # the index lists the boss with its live status; the no-JS confirmation page works
    page.goto(f"{asgi_server}/ops/")
    assert "paused" in page.text_content(".boss-list")
    page.screenshot(path=str(SCREENSHOT_DIR / "ops-index.png"), full_page=True)
    page.goto(f"{asgi_server}/ops/bosses/{boss.slug}/end/")
    page.screenshot(path=str(SCREENSHOT_DIR / "confirm-end.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_selector(".messages .success", timeout=5_000)
    assert boss_state(boss_id=boss.pk).status == "expired"
    assert not errors, errors


def test_player_bar_drops_before_the_ack_then_settles_on_the_truth(asgi_server, browser, make_boss):
    from shards.services import shard_create

    boss = make_boss(name="Frost Wyrm", slug="frost-wyrm", max_hp=100_000, min_damage=80, max_damage=120)
    boss_go_live(boss=boss)
    shard_create(key="eu-1", name="Europe 1", region="eu", kind="hosted")
    page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Hold the gateway's answers to the page so "before the server answers" is a fact.
    hold = {"on": False, "held": [], "page_side": None}

    def route(ws):
        hold["page_side"] = ws
        server = ws.connect_to_server()

        def from_server(message):
            if hold["on"] and "attack_ack" in str(message):
                hold["held"].append(message)
            else:
                ws.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws/shards/"), route)
    # state sockets: the first goes through at once; a reconnection waits for the test
    state_conns: list = []

    def state_route(ws):
        state_conns.append(ws)
        if len(state_conns) == 1 or not hold.get("park_reconnect"):
            ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/bosses/"), state_route)
    page.goto(f"{asgi_server}/play/{boss.slug}/?shard=eu-1")
    page.wait_for_function("() => !document.getElementById('attack').disabled", timeout=10_000)
    page.wait_for_function("() => +document.getElementById('hpbar').dataset.hp === 100000", timeout=5_000)
    assert page.text_content("#boss-name") == "Frost Wyrm"

    hold["on"] = True
    page.click("#attack")
    # at once: the bar shows the predicted damage (the least a hit deals: 80) gone, no ack yet
    page.wait_for_function("() => +document.getElementById('hpbar').dataset.hp === 99920", timeout=1_000)
    pending = page.evaluate("[...window.__play.model.pending.values()].map(p => p.ackAt)")
    assert pending == [None]
    assert bar(page)["truth"] == 100_000
    deadline = time.monotonic() + 5
    while not hold["held"] and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert hold["held"], "the gateway never answered the attack"
    ack = json.loads(hold["held"][0])
    assert ack["type"] == "attack_ack" and 80 <= ack["damage"] <= 120
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "player.png"), full_page=True)

    hold["on"] = False
    for message in hold["held"]:  # now let the page have the server's answer
        hold["page_side"].send(message)
    # the gateway flushes its buffer within its tick; then the sync tick applies it
    deadline = time.monotonic() + 5
    while get_redis().hget(keys.BossKeys(boss.pk).state, "accepted") != str(ack["damage"]):
        assert time.monotonic() < deadline, "the hosted shard never flushed the attack"
        time.sleep(0.02)
    out = boss_tick(boss_id=boss.pk, force=True)
    assert out.hp == 100_000 - ack["damage"]
    page.wait_for_function(
        f"() => {{ const d = document.getElementById('hpbar').dataset;"
        f" return +d.truth === {out.hp} && +d.hp === {out.hp} && +d.pending === 0; }}",
        timeout=5_000,
    )
    assert page.text_content("#my-damage") == str(ack["damage"])

    # the state socket drops; a tick lands while the page is away; it reconnects (backoff)
    # and resyncs from the snapshot the server sends first on every connection
    hold["park_reconnect"] = True
    page.evaluate("window.__play.state.drop()")
    page.wait_for_function(
        "() => document.getElementById('conn').textContent.startsWith('reconnecting')", timeout=2_000
    )
    from shards.models import Shard
    from shards.services import shard_session_open

    other = shard_session_open(shard=Shard.objects.get(key="eu-1"))
    delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=other.epoch, seq=1, amount=5_000)
    missed = boss_tick(boss_id=boss.pk, force=True)  # published while the page is away
    deadline = time.monotonic() + 5
    while len(state_conns) < 2:  # the page retried on its own (backoff)
        assert time.monotonic() < deadline, "the page did not reconnect"
        page.wait_for_timeout(20)
    assert bar(page)["version"] < missed.version
    state_conns[-1].connect_to_server()  # the reconnection reaches the server: snapshot first
    page.wait_for_function(
        f"() => {{ const d = document.getElementById('hpbar').dataset;"
        f" return +d.truth === {missed.hp} && +d.version === {missed.version} && +d.hp === {missed.hp}; }}",
        timeout=5_000,
    )
    assert not errors, errors
