"""The conformance kit itself: its vectors are current, and it tells a correct SDK from a broken one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance import vectors
from tests.support.markers import require_process_marker

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_vectors_are_what_the_platforms_code_gives_now() -> None:
    for name, text in vectors.rendered().items():
        assert (vectors.VECTORS / name).read_text() == text, f"run python -m conformance.vectors ({name})"


def test_the_kit_imports() -> None:
    """Every module of the kit imports against the platform's current code (a renamed helper
    fails here, in the developer suite, not only when the kit runs)."""
    import conformance.driver
    import conformance.proxy
    import conformance.runner
    import conformance.scenarios

    assert conformance.scenarios.SCENARIOS and conformance.runner.SDKS
    assert conformance.driver.Driver and conformance.proxy.FaultProxy


def test_the_vectors_hold_every_verdict() -> None:
    tickets = vectors.tickets()
    assert {c["expect"] for c in tickets["verify"]} == {"ok", "ticket_invalid", "ticket_expired"}
    verdicts = {c["expect"] for c in vectors.webhooks()["cases"]}
    assert verdicts == {"ok", "webhook_malformed", "webhook_stale", "webhook_bad_signature"}


@pytest.mark.process
@pytest.mark.timeout(240)
def test_the_kit_passes_the_python_sdk_and_fails_broken_ones(tmp_path: Path) -> None:
    require_process_marker("conformance")
    broken = f"{sys.executable} tests/conformance/broken_driver.py"
    run = subprocess.run(
        [sys.executable, "-m", "conformance", "--run-dir", str(tmp_path), "--sdk", "python"]
        + ["--driver", f"settled={broken} settled", "--driver", f"keeps={broken} keeps"]
        + ["--driver", f"pings={broken} pings", "--scenario", "fenced,rollback,dead_link"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    lines = {tuple(line.split()[:3]) for line in out.splitlines() if line.startswith(("PASS", "FAIL"))}
    assert lines == {
        ("PASS", "python", "fenced"),
        ("PASS", "python", "rollback"),
        ("PASS", "python", "dead_link"),
        ("FAIL", "settled", "fenced"),  # the settled damage would land twice
        ("PASS", "settled", "rollback"),
        ("PASS", "settled", "dead_link"),
        ("PASS", "keeps", "fenced"),
        ("FAIL", "keeps", "rollback"),  # what the rollback took back would be lost
        ("PASS", "keeps", "dead_link"),
        ("PASS", "pings", "fenced"),
        ("PASS", "pings", "rollback"),
        ("FAIL", "pings", "dead_link"),  # fenced as crashed: it never noticed the silent link
    }, out
    assert "conformance: 9/12 passed" in out
