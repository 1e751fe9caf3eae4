"""The browser JS keeps no protocol codes of its own: no close code number, no status and no
error code literal. The pages read them from the JSON the server renders (static/js/protocol.js)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worldboss_sdk.protocol import as_dict

ROOT = Path(__file__).resolve().parents[2]
JS_FILES = sorted((ROOT / "static" / "js").glob("*.js"))

# Quoted words that are protocol values but also mean something else in the pages.
NOT_CODES = {
    "error": "the `type` of an error frame (as `state` or `ack` are types)",
    "live": "the connection indicator's text (live.js setConn)",
}


def _forbidden_words() -> set[str]:
    protocol = as_dict()
    words = {*protocol["errors"].values(), *protocol["status"].values()}
    return words - set(NOT_CODES)


def _code_only(source: str) -> str:
    """The source without comments: a comment may name a code, the code may not."""
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    # a line comment starts at `//` after a blank or at the start of a line (not `${scheme}//`)
    return re.sub(r"(^|\s)//[^\n]*", r"\1", source)


def offences(source: str) -> list[str]:
    """Every close code number and every quoted status or error code in ``source``'s code."""
    code = _code_only(source)
    found = [f"close code number {m.group(0)}" for m in re.finditer(r"(?<![\w.])4\d{3}(?![\w.])", code)]
    found += [f"close({m.group(1)})" for m in re.finditer(r"\.close\(\s*(\d+)", code)]
    words = "|".join(sorted(map(re.escape, _forbidden_words())))
    found += [f"literal {m.group(0)}" for m in re.finditer(rf"([\"'`])({words})\1", code)]
    return found


def test_the_scan_finds_codes_and_ignores_comments() -> None:
    source = """
      // 4404: no such boss; a `defeated` event
      /* "rate_limited" */
      const url = `${scheme}//${location.host}`;
      if ([4401, 4403].includes(ev.code)) ws.close(1000);
      if (msg.status === "defeated" || msg.code === 'rate_limited' || s === `expired`) {}
      if (msg.type === "error") conn.textContent = "live";
    """
    assert offences(source) == [
        "close code number 4401",
        "close code number 4403",
        "close(1000)",
        'literal "defeated"',
        "literal 'rate_limited'",
        "literal `expired`",
    ]


def test_there_are_scripts_to_scan() -> None:
    assert {"live.js", "play.js", "ops.js", "hp.js", "protocol.js"} <= {p.name for p in JS_FILES}


@pytest.mark.parametrize("script", JS_FILES, ids=lambda p: p.name)
def test_no_protocol_code_literal_in_the_js(script: Path) -> None:
    found = offences(script.read_text())
    assert not found, (
        f"static/js/{script.name} has its own protocol codes: {found}; read them from protocol.js"
    )
