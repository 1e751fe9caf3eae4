"""Page tests wait on function predicates (``"() => ..."``), never on string expressions:
Playwright evaluates an expression with ``eval``, which the pages' Content-Security-Policy
refuses (docs/security.md, "Pages: Content-Security-Policy"), so such a wait would fail
in the browser with an EvalError instead of testing the page."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# wait_for_function( then a string literal (f-strings and triple quotes too) not starting a function
CALL = re.compile(r"wait_for_function\(\s*f?(\"\"\"|\"|')")


def _expression_waits(text: str) -> list[str]:
    found = []
    for m in CALL.finditer(text):
        head = text[m.end() : m.end() + 60]
        if not head.lstrip().startswith(("() =>", "(", "async", "function")) or head.startswith("(() =>"):
            found.append(head)
    return found


def test_the_check_tells_functions_from_expressions():
    assert _expression_waits('page.wait_for_function("window.x === 1")') == ['window.x === 1")']
    assert _expression_waits('page.wait_for_function(f"(() => {{ return 1; }})()")')
    assert not _expression_waits('page.wait_for_function("() => window.x === 1", timeout=5)')
    assert not _expression_waits('page.wait_for_function(\n    f"() => {{ return 1; }}"\n)')


def test_no_page_test_waits_on_an_expression():
    offenders = [
        f"{path.relative_to(TESTS)}: {head!r}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name
        for head in _expression_waits(path.read_text())
    ]
    assert not offenders, "write these as function predicates, '() => ...':\n" + "\n".join(offenders)
