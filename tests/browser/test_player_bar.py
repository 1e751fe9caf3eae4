"""Headless Chromium: the player's HP bar never rises unless the truth rose.

A burst of attacks on the player page while sync ticks run every 40 ms (so states that hold
the page's own hits arrive at every moment after their acks, as in a real fight): every
frame the page draws is recorded from the model itself, during the burst and after it, and
no frame may show more HP than the one before (HP only falls in a fight, so the truth never
rose here). The bar then ends exactly on the authority's HP with nothing pending.
"""

from __future__ import annotations

import threading

import pytest

from bosses.selectors import boss_state
from bosses.services import boss_go_live, boss_tick
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ATTACKS = 30

# Record what every animation frame draws (rounded as the bar's text is) with the truth then.
RECORD = """() => {
  const m = window.__play.model;
  window.__frames = [];
  const frame = m.frame.bind(m);
  m.frame = (now) => { const v = frame(now); window.__frames.push([Math.round(v), m.truthHp]); return v; };
}"""

# ATTACKS attacks at 15 per second (under the boss's 20: no refusal from either bucket).
BURST = """(n) => new Promise((done) => {
  let sent = 0;
  const t = setInterval(() => { window.__play.attack(); if (++sent === n) { clearInterval(t); done(); } }, 66);
})"""


def test_the_bar_never_rises_during_and_after_a_burst(asgi_server, browser, make_boss):
    from shards.services import shard_create

    boss = make_boss(
        name="Iron Hydra",
        slug="iron-hydra",
        max_hp=1_000_000,
        min_damage=80,
        max_damage=120,
        attacks_per_second=20,
    )
    boss_go_live(boss=boss)
    shard_create(key="eu-1", name="Europe 1", region="eu", kind="hosted")
    page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{asgi_server}/play/{boss.slug}/?shard=eu-1")
    page.wait_for_function("() => !document.getElementById('attack').disabled", timeout=10_000)
    page.wait_for_function("() => +document.getElementById('hpbar').dataset.hp === 1000000", timeout=5_000)

    stop = threading.Event()

    def ticks() -> None:  # the sync loop, faster than the beat: states land at any moment
        while not stop.wait(0.04):
            boss_tick(boss_id=boss.pk, force=True)

    ticker = threading.Thread(target=ticks, name="ticks", daemon=True)
    page.evaluate(RECORD)
    ticker.start()
    try:
        page.evaluate(BURST, ATTACKS)
        acked = wait_until(
            lambda: page.evaluate("+document.getElementById('my-hits').textContent") == ATTACKS,
            timeout_s=10,
            what="every attack acked",
        )
        assert acked
        dealt = int(page.text_content("#my-damage").replace(",", ""))
        wait_until(
            lambda: boss_state(boss_id=boss.pk).hp == 1_000_000 - dealt,
            timeout_s=10,
            what="every hit applied",
        )
        final = boss_state(boss_id=boss.pk).hp
        page.wait_for_function(
            f"() => {{ const d = document.getElementById('hpbar').dataset;"
            f" return +d.truth === {final} && +d.hp === {final} && +d.pending === 0; }}",
            timeout=5_000,
        )
        page.wait_for_timeout(500)  # and after: frames once everything settled
    finally:
        stop.set()
        ticker.join(timeout=5)
    frames = page.evaluate("window.__frames")
    assert len(frames) > 60, len(frames)
    rises = [
        (i, frames[i - 1], frames[i])
        for i in range(1, len(frames))
        if frames[i][0] > frames[i - 1][0] and frames[i][1] <= frames[i - 1][1]
    ]
    assert not rises, f"{len(rises)} frames rose without the truth rising, first: {rises[:5]}"
    assert frames[-1] == [final, final]
    assert not errors, errors
