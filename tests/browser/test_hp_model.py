"""static/js/hp.js in Chromium: truth/version rules, prediction, acks, refusals, expiry.

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
  const m = new HpModel({ hp: 1000, maxHp: 1000, protocol, version: 5, settleMs: 300, holdMs: 1200, expireMs: 3000 });
  out.older = m.truth({ hp: 900, version: 4, status: 'live' }, 0);
  out.same = m.truth({ hp: 900, version: 5, status: 'live' }, 0);
  out.afterStale = m.truthHp;
  out.newer = m.truth({ hp: 950, version: 6, status: 'live' }, 0);
  out.garbage = m.truth({ hp: '1', version: 99 }, 0);

  for (let t = 0; t <= 990; t += 16) m.frame(t);   // the bar eases to the truth
  out.eased = m.shown;
  // a click: shown drops at once by the expected damage
  const a = m.predict(100, 1000);
  out.shownAfterClick = m.shown;
  m.ack(a, 120, 1010);                          // the real damage is 120
  out.shownAfterAck = m.shown;
  m.truth({ hp: 950, version: 7, status: 'live' }, 1100);   // too early to hold the hit
  out.pendingEarly = m.pending.size;
  out.targetEarly = m.target(1100);
  m.truth({ hp: 830, version: 8, status: 'live' }, 1400);   // >= settleMs after the ack
  out.pendingSettled = m.pending.size;
  out.targetSettled = m.target(1400);

  // a refused hit gives the HP back (eased, not snapped)
  const b = m.predict(100, 2000);
  m.reject(b);
  out.targetAfterReject = m.target(2000);
  m.lastFrame = 2000;
  out.frameAfterReject = m.frame(2016);

  // an acked hit with no tick after it is let go after holdMs; an unacked one after expireMs
  const c = m.predict(50, 3000); m.ack(c, 50, 3000);
  const d = m.predict(70, 3000);
  out.heldBoth = m.target(3500);
  out.afterHold = m.target(4300);
  out.afterExpire = m.target(6100);

  // a forced resync (snapshot) is taken even with an older version (the fight was reset)
  out.forced = m.truth({ hp: 1000, version: 1, status: 'live' }, 7000, { force: true });
  out.forcedVersion = m.version;
  // defeat clears predictions
  m.predict(10, 7100);
  m.truth({ hp: 0, version: 2, status: 'defeated' }, 7200);
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
    assert (out["pendingEarly"], out["targetEarly"]) == (1, 830)
    assert (out["pendingSettled"], out["targetSettled"]) == (0, 830)
    assert out["targetAfterReject"] == 830 and 730 < out["frameAfterReject"] < 830
    assert out["heldBoth"] == 830 - 120
    assert out["afterHold"] == 830 - 70 and out["afterExpire"] == 830
    assert out["forced"] is True and out["forcedVersion"] == 1
    assert out["pendingAfterDefeat"] == 0
