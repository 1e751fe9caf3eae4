"""The fight report of a won fight with a crash, in headless Chromium against a live uvicorn."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.bosses.test_report import play_won_fight
from tests.browser.support import SCREENSHOT_DIR, staff_session_cookie
from transport.report_views import CHART_W, PAD_L

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORT = {"width": 1400, "height": 1000}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct scanlines) of a non-interlaced PNG, read with the standard library.

    Scanlines are compared as stored (filter byte + filtered bytes): an image of one colour has
    at most a handful of distinct ones (one per filter type, the first row apart), so many
    distinct scanlines prove the picture is not blank without decoding every filter.
    """
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    pos, width = 8, 0
    height = bytes_per_pixel = 0
    idat = bytearray()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, (depth, interlace)
            bytes_per_pixel = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(bytes(idat))
    stride = 1 + width * bytes_per_pixel
    assert len(raw) == stride * height
    rows = {raw[i : i + stride] for i in range(0, len(raw), stride)}
    return width, height, len(rows)


def test_report_of_a_won_fight_with_a_crash_renders(asgi_server, browser, make_boss, make_session, tmp_path):
    boss, _, us = play_won_fight(make_boss, make_session)
    context = browser.new_context(viewport=VIEWPORT)
    context.add_cookies([{"name": "sessionid", "value": staff_session_cookie(), "url": asgi_server}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))

    # from the dashboard's link to the report
    page.goto(f"{asgi_server}/ops/bosses/{boss.slug}/")
    page.click("#report-link")
    page.wait_for_selector("#hp-chart")
    assert page.url == f"{asgi_server}/ops/bosses/{boss.slug}/fights/1/report/"
    page.wait_for_function("() => window.__report !== undefined", timeout=5_000)

    # summary header
    assert page.text_content("#final-status") == "defeated"
    assert page.text_content("#kpi-damage .value").strip() == "10,000"
    assert page.text_content("#kpi-crashes .value").strip() == "1"
    assert page.text_content("#kpi-players .value").strip() == "4"
    assert page.text_content("#kpi-final-hp .value").strip() == "0%"

    # HP chart: a drawn line of the five archived points, three phase marks, one crash mark
    box = page.locator("#hp-chart").bounding_box()
    assert box["width"] > 1_000 and box["height"] > 200
    points = page.get_attribute("#hp-line", "points").split()
    assert len(points) == 5
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys) and ys[0] < ys[-1]  # HP falls: the line goes down the chart
    assert page.locator("#hp-chart .phase-mark-g").count() == 3
    assert page.get_attribute("#hp-chart .phase-mark-g >> nth=1", "data-phase") == "Frenzy"
    crash = page.locator('#hp-chart .saga-mark-g[data-kind="crash"]')
    assert crash.count() == 1
    assert (crash.get_attribute("data-shard"), crash.get_attribute("data-amount")) == ("us-1", "500")
    assert page.locator("#hp-chart .threshold-g").count() == 3

    # shard chart: stacked bars of both shards, legend toggles one off
    assert page.locator("#shard-chart rect.series").count() >= 2
    assert page.locator("#shard-legend button").all_text_contents() == ["eu-1", "us-1"]
    page.click('#shard-legend button[data-series="1"]')
    assert page.locator("#shard-chart rect.s1").first.is_hidden()
    page.click('#shard-legend button[data-series="1"]')
    assert page.locator("#shard-chart rect.s1").first.is_visible()

    # hovering the HP chart reads out the nearest archived point: at the plot's left edge, the
    # go-live entry (the first tick came milliseconds later, after the deltas were ingested)
    left = (PAD_L + 1) / CHART_W * box["width"]  # one viewBox unit inside the plot
    page.locator("#hp-chart").hover(position={"x": left, "y": box["height"] / 2})
    page.wait_for_function(
        "() => document.getElementById('hp-readout').textContent.endsWith('HP 10,000 (100.00%) · version 1')",
        timeout=5_000,
    )
    assert page.get_attribute("#hp-cursor", "visibility") == "visible"

    # tables, numbers as the fight made them
    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == 4
    assert rows.nth(0).locator("td").all_text_contents() == ["1", "alice", "5,000"]
    assert rows.nth(3).locator("td").all_text_contents() == ["4", "bob", "1,000"]
    shard_rows = page.locator("#shard-totals tbody tr")
    assert shard_rows.nth(0).locator("td").all_text_contents() == ["1", "eu-1", "8,000", "76.2%"]
    assert shard_rows.nth(1).locator("td").all_text_contents() == ["2", "us-1", "2,500", "23.8%"]
    saga = page.locator('#sagas tbody tr[data-kind="crash"]')
    assert saga.locator("td").all_text_contents()[1:5] == ["crash", "us-1", "fair", "500"]
    assert page.locator('#rewards tr[data-tier="champion"] td').all_text_contents()[:2] == ["champion", "1"]
    assert page.locator('#rewards tr[data-tier="elite"] td').all_text_contents()[:2] == ["elite", "3"]

    # the export links answer for the same signed-in operator
    data = page.request.get(asgi_server + page.get_attribute("#export-json", "href")).json()
    assert data["summary"]["total_damage"] == 10_000 and data["marks"]["sagas"][0]["epoch"] == us.epoch
    exported = page.request.get(asgi_server + page.get_attribute("#export-csv", "href")).text()
    assert exported.splitlines()[0].endswith("shard:eu-1,shard:us-1")

    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    width, height, distinct_rows = png_facts(shot)
    assert (width, height) == (VIEWPORT["width"], VIEWPORT["height"])
    assert distinct_rows > 100, distinct_rows  # a page with charts and tables, not one colour
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)  # the whole page, for a person to look at
    page.screenshot(path=str(SCREENSHOT_DIR / "fight-report.png"), full_page=True)
    assert not errors, errors
    assert not failed, failed  # no script, style or font from anywhere else
