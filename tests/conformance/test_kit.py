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
@pytest.mark.timeout(420)
def test_the_kit_passes_the_python_sdk_and_fails_broken_ones(tmp_path: Path) -> None:
    require_process_marker("conformance")
    broken = f"{sys.executable} tests/conformance/broken_driver.py"
    sdks = ("python", "settled", "keeps", "pings", "unsent")
    scenarios = ("fenced", "rollback", "dead_link", "stale_heartbeat")
    drivers = [arg for sdk in sdks[1:] for arg in ("--driver", f"{sdk}={broken} {sdk}")]
    run = subprocess.run(
        [sys.executable, "-m", "conformance", "--run-dir", str(tmp_path), "--sdk", "python", *drivers]
        + ["--scenario", ",".join(scenarios)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    lines = {tuple(line.split()[:3]) for line in out.splitlines() if line.startswith(("PASS", "FAIL"))}
    fails = {
        ("settled", "fenced"),  # the settled damage would land twice
        ("keeps", "rollback"),  # what the rollback took back would be lost
        ("pings", "dead_link"),  # fenced as crashed: it never noticed the silent link
        ("unsent", "stale_heartbeat"),  # a stale heartbeat's damage would be settled again
    }
    assert lines == {
        ("FAIL" if (sdk, scenario) in fails else "PASS", sdk, scenario)
        for sdk in sdks
        for scenario in scenarios
    }, out
    assert "conformance: 16/20 passed" in out
