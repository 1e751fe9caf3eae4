"""static/js/hp.js in Chromium: truth/version rules, prediction, acks, the own hits a truth
holds counted once, refusals, expiry.

The module is imported by the real browser from the live server (no bundler, no Node), and
driven with explicit timestamps so every rule is checked deterministically.
"""

from __future__ import annotations

import pytest

from worldboss_sdk.protocol import as_dict

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = """async (protocol) => {
  const { HpModel } = await import('/static/js/hp.js');
  const out = {};
  const m = new HpModel({ hp: 1000, maxHp: 1000, protocol, version: 5, expireMs: 3000, dropMs: 10000 });
  out.older = m.truth({ hp: 900, version: 4, status: 'live' }, 0);
  out.same = m.truth({ hp: 900, version: 5, status: 'live' }, 0);
  out.afterStale = m.truthHp;
  out.newer = m.truth({ hp: 950, version: 6, status: 'live' }, 0);
  out.garbage = m.truth({ hp: '1', version: 99 }, 0);

  for (let t = 0; t <= 990; t += 16) m.frame(t);   // the bar eases to the truth
  out.eased = m.shown;
  // a click: shown drops at once by the predicted damage; the ack's real damage lowers it
  const a = m.predict(100, 1000);
  out.shownAfterClick = m.shown;
  m.ack(a, 120, 1010);
  out.shownAfterAck = m.shown;
  m.truth({ hp: 950, version: 7, status: 'live' }, 1100);   // does not hold the hit yet
  out.early = [m.pending.size, m.target(1100)];
  // another player's 10: the hit cannot be in it either (950 - 10 > 950 - 120): no rise
  m.truth({ hp: 940, version: 8, status: 'live' }, 1150);
  out.others = [m.pending.size, m.target(1150)];
  m.truth({ hp: 820, version: 9, status: 'live' }, 1200);   // holds the hit (and the 10)
  out.held = [m.pending.size, m.target(1200)];

  // two hits; the truth holds the first only: the second still counts, the first not twice
  const b = m.predict(100, 2000); m.ack(b, 100, 2001);
  const c = m.predict(100, 2050); m.ack(c, 100, 2051);
  out.two = m.target(2060);
  m.truth({ hp: 720, version: 10, status: 'live' }, 2100);  // both kept: the first's bound counts the second
  out.firstHeld = [m.pending.size, m.target(2100)];
  m.truth({ hp: 620, version: 11, status: 'live' }, 2200);
  out.bothHeld = [m.pending.size, m.target(2200)];
  // a truth that holds a hit at once, right after its ack: counted once
  const d = m.predict(50, 2300); m.ack(d, 50, 2301);
  m.truth({ hp: 570, version: 12, status: 'live' }, 2302);
  out.quick = [m.pending.size, m.target(2302)];

  // a refused hit gives the HP back (eased, not snapped)
  const e = m.predict(100, 3000);
  m.reject(e);
  out.targetAfterReject = m.target(3000);
  m.lastFrame = 3000;
  out.frameAfterReject = m.frame(3016);

  // a hit never acked expires after expireMs; an acked one the truth never holds after dropMs
  const f = m.predict(70, 4000);
  const g = m.predict(30, 4000); m.ack(g, 30, 4000);
  out.heldBoth = m.target(4500);
  out.afterExpire = m.target(7100);
  out.afterDrop = m.target(14100);

  // a forced resync (snapshot) is taken even with an older version (the fight was reset)
  m.predict(10, 15000);
  out.forced = m.truth({ hp: 1000, version: 1, status: 'live' }, 15100, { force: true });
  out.forcedVersion = m.version;
  out.pendingAfterReset = m.pending.size;
  // defeat clears predictions
  m.predict(10, 16000);
  m.truth({ hp: 0, version: 2, status: 'defeated' }, 16100);
  out.pendingAfterDefeat = m.pending.size;
  return out;
}"""


def test_hp_model_rules(asgi_server, browser):
    page = browser.new_page()
    page.goto(f"{asgi_server}/api/bosses/none/state")  # any same-origin page
    out = page.evaluate(SCRIPT, as_dict())  # the constants a page gets from the server
    assert (out["older"], out["same"], out["afterStale"]) == (False, False, 1000)
    assert out["newer"] is True and out["garbage"] is False
    assert out["eased"] == 950
    assert out["shownAfterClick"] == 850 and out["shownAfterAck"] == 830
    assert out["early"] == [1, 830] and out["others"] == [1, 830] and out["held"] == [0, 820]
    assert out["two"] == 620 and out["firstHeld"] == [2, 620] and out["bothHeld"] == [0, 620]
    assert out["quick"] == [0, 570]
    assert out["targetAfterReject"] == 570 and 470 < out["frameAfterReject"] < 570
    assert out["heldBoth"] == 570 - 100
    assert out["afterExpire"] == 570 - 30 and out["afterDrop"] == 570
    assert out["forced"] is True and out["forcedVersion"] == 1 and out["pendingAfterReset"] == 0
    assert out["pendingAfterDefeat"] == 0
