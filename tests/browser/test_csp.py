"""Every page carries a Content-Security-Policy, and every page still works under it: headless
Chromium reports no violation on the index, the player page, the operator pages, the fight
report, the admin and the API's docs page, and each page's inline module ran (its nonce)."""

from __future__ import annotations

import pytest

from bosses.services import boss_go_live
from shards.services import shard_create
from tests.bosses.test_report import play_won_fight
from tests.browser.support import staff_session_cookie

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Chromium fires securitypolicyviolation on the document for every blocked script, style,
# connection or frame: collect them from the first moment of each page.
COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def test_every_page_has_a_policy_and_no_violation(asgi_server, browser, make_boss, make_session):
    won, _, _ = play_won_fight(make_boss, make_session)  # a fight with a report
    boss = make_boss(name="Policy Golem", slug="policy-golem", max_hp=50_000)
    boss_go_live(boss=boss)
    shard_create(key="play-1", name="Play 1", region="eu", kind="hosted")
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    context.add_init_script(COLLECT_VIOLATIONS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # (path, a condition that holds once the page's own scripts ran)
    pages = [
        ("/", None),
        (f"/play/{boss.slug}/?shard=play-1", "!document.getElementById('attack').disabled"),
        ("/ops/", "window.__overview !== undefined"),
        (f"/ops/bosses/{boss.slug}/", "document.getElementById('conn').textContent === 'live'"),
        (f"/ops/bosses/{won.slug}/fights/1/report/", None),
        ("/admin/", None),
        (f"/admin/bosses/bossencounter/{boss.pk}/change/", None),
        ("/api/v1/docs", "document.querySelector('#swagger-ui .opblock') !== null"),
    ]
    nonces = set()
    for path, ready in pages:
        response = page.goto(f"{asgi_server}{path}")
        assert response is not None and response.status == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy, path
        nonces.add(policy.split("'nonce-")[1].split("'")[0])
        if ready:
            page.wait_for_function(f"() => {ready}", timeout=10_000)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__csp") == [], (path, page.evaluate("window.__csp"))
    assert len(nonces) == len(pages)  # a fresh nonce per response
    assert not console, console
    assert not errors, errors


def test_an_injected_inline_script_is_blocked(asgi_server, browser, make_boss):
    """What the policy is for: a script without the response's nonce does not run."""
    boss = make_boss(slug="inject")
    boss_go_live(boss=boss)
    page = browser.new_page()
    page.goto(f"{asgi_server}/")
    ran = page.evaluate(
        """() => new Promise((resolve) => {
          window.__injected = false;
          document.addEventListener('securitypolicyviolation', () => resolve(window.__injected), { once: true });
          const s = document.createElement('script');
          s.textContent = 'window.__injected = true';
          document.body.appendChild(s);
        })"""
    )
    assert ran is False
