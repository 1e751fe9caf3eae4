"""Headless Chromium: the dashboard's "push lag" is how late the states reach the page.

Every message between the page and the server is held 300 ms in the page (both ways, as a
loaded server or a slow network would), while ticks are published: the figure must read
about 300 ms. It used to set the page's clock from each ``ops`` message's ``server_ms``,
which was as late as the states, and read 0 ms whatever the delay.
"""

from __future__ import annotations

import re
import threading

import pytest

from bosses.services import boss_go_live, boss_tick
from tests.browser.support import staff_session_cookie
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DELAY_MS = 300

SLOW_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  const DELAY = DELAY_MS;
  window.WebSocket = class extends Native {
    set onmessage(fn) { super.onmessage = (ev) => setTimeout(() => fn(ev), DELAY); }
    get onmessage() { return super.onmessage; }
    send(data) { setTimeout(() => { if (this.readyState === Native.OPEN) super.send(data); }, DELAY); }
  };
})();
""".replace("DELAY_MS", str(DELAY_MS))


def test_push_lag_reads_the_delay_of_the_states(asgi_server, browser, make_boss, make_session):
    boss = make_boss(
        slug="slow-feed", max_hp=10_000_000, heartbeat_interval_ms=20_000, heartbeat_timeout_ms=60_000
    )
    boss_go_live(boss=boss)
    s = make_session("eu-1")
    heartbeat_record(boss_id=boss.pk, shard_key="eu-1", epoch=s.epoch, pending=0)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    context.add_init_script(SLOW_SOCKETS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{asgi_server}/ops/bosses/{boss.slug}/")
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=10_000)

    stop = threading.Event()

    def ticks() -> None:
        seq = 0
        while not stop.wait(0.1):
            seq += 1
            delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=s.epoch, seq=seq, amount=10)
            boss_tick(boss_id=boss.pk, force=True)

    ticker = threading.Thread(target=ticks, daemon=True)
    ticker.start()
    try:
        page.wait_for_function("() => document.getElementById('k-push').textContent !== '—'", timeout=20_000)
        page.wait_for_timeout(2_000)  # more states: the median of several
        text = page.text_content("#k-push")
    finally:
        stop.set()
        ticker.join(timeout=5)
    lag = int(re.sub(r"[^\d]", "", text))
    assert DELAY_MS - 50 <= lag <= DELAY_MS + 500, text
    assert not errors, errors
