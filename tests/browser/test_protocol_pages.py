"""The pages get the protocol's constants from the server, and the JS acts on them.

Headless Chromium against a live uvicorn: every page carries ``worldboss_sdk.protocol.as_dict()``
as JSON (``<script id="protocol">``), the page modules use that object, and ``LiveSocket``
stops reconnecting after a close whose code that JSON calls permanent, while the same close
is retried when the protocol it is given does not list the code.
"""

from __future__ import annotations

import json

import pytest

from bosses.services import boss_go_live
from shards.services import shard_create
from tests.browser.support import staff_session_cookie
from worldboss_sdk.protocol import PERMANENT_CLOSE_CODES, CloseCode, as_dict

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGE_PROTOCOL = "() => JSON.parse(document.getElementById('protocol').textContent)"

# Open a LiveSocket on `path` and report what it decides right after the first close: the
# decision is taken in the close handler itself ("closed": final; "retrying": a reconnect is
# scheduled), so no waiting on timers is involved. `without` lists close codes to drop from
# the page's permanent ones (the socket then gets a protocol object other than the page's).
RUN_SOCKET = """async ({ path, without }) => {
  const { LiveSocket } = await import('/static/js/live.js');
  const { readProtocol } = await import('/static/js/protocol.js');
  const page = readProtocol();
  const options = without.length
    ? { protocol: { ...page, permanentCloseCodes: page.permanentCloseCodes.filter((c) => !without.includes(c)) } }
    : {};  // no protocol given: LiveSocket reads the page's
  return await new Promise((resolve) => {
    let closeCode = null;
    const seen = [];
    const sock = new LiveSocket(path, {
      ...options,
      onClose: (ev) => { closeCode = ev.code; },
      onStatus: (status, attempt) => {
        seen.push(status);
        if (closeCode === null) return;
        sock.stop();
        resolve({ closeCode, status, attempt, seen });
      },
    });
  });
}"""


def _as_json(data: object) -> object:
    return json.loads(json.dumps(data))


@pytest.fixture
def fight(make_boss):
    """A live boss and an open shard: what the player page needs."""
    boss = make_boss(name="Protocol Golem", slug="protocol-golem", max_hp=50_000)
    boss_go_live(boss=boss)
    shard_create(key="eu-1", name="Europe 1", region="eu", kind="hosted")
    return boss


def test_every_page_carries_the_protocol_and_the_modules_use_it(asgi_server, browser, fight):
    expected = _as_json(as_dict())
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for path in ("/", "/ops/", f"/play/{fight.slug}/", f"/ops/bosses/{fight.slug}/end/"):
        page.goto(f"{asgi_server}{path}")
        assert page.evaluate(PAGE_PROTOCOL) == expected, path

    # the two pages with live modules hand that same object to them
    page.goto(f"{asgi_server}/play/{fight.slug}/?shard=eu-1")
    page.wait_for_function("() => !document.getElementById('attack').disabled", timeout=10_000)
    assert page.evaluate("window.__play.protocol") == expected
    assert page.evaluate("window.__play.state.protocol === window.__play.protocol")
    assert page.evaluate("window.__play.model.liveStatus") == expected["status"]["LIVE"]
    page.goto(f"{asgi_server}/ops/bosses/{fight.slug}/")
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'", timeout=10_000)
    assert page.evaluate("window.__ops.protocol") == expected
    assert page.evaluate("Object.isFrozen(window.__ops.protocol.close)")
    # the action buttons carry the statuses the view allows them in
    assert (
        page.get_attribute('#actions [data-action="resume"]', "data-allowed") == expected["status"]["PAUSED"]
    )
    assert not errors, errors


@pytest.mark.parametrize(
    ("path", "close"),
    [
        ("/ws/bosses/no-such-boss/", CloseCode.UNKNOWN_BOSS),
        ("/ws/ops/bosses/{slug}/", CloseCode.UNAUTHORIZED),
    ],
    ids=["unknown-boss", "ops-feed-anonymous"],
)
def test_reconnecting_stops_on_a_permanent_close_code_from_the_page(asgi_server, browser, fight, path, close):
    assert close in PERMANENT_CLOSE_CODES
    page = browser.new_page()  # a guest: the operator feed refuses it
    page.goto(f"{asgi_server}/play/{fight.slug}/?shard=eu-1")
    protocol = page.evaluate(PAGE_PROTOCOL)
    path = path.format(slug=fight.slug)

    final = page.evaluate(RUN_SOCKET, {"path": path, "without": []})
    assert final["closeCode"] == close
    assert final["closeCode"] in protocol["permanentCloseCodes"]  # the page's JSON calls it final
    assert (final["status"], final["attempt"]) == ("closed", close)  # onStatus("closed", code)
    assert final["seen"] == ["connecting", "open", "closed"]

    # the same close under a protocol that does not list the code: the socket reconnects,
    # so the decision above came from the protocol object, not from a code in live.js
    retried = page.evaluate(RUN_SOCKET, {"path": path, "without": [close]})
    assert retried["closeCode"] == close
    assert (retried["status"], retried["attempt"]) == ("retrying", 1)
    assert retried["seen"] == ["connecting", "open", "retrying"]
