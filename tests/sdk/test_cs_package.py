"""The C# SDK builds with Mono (``make mono`` installs it as root when it is missing) and its
example game server (sdk-cs/examples/GameServer.cs, on the built WorldBoss.dll) runs against a
real platform (uvicorn + Redis): every acknowledged hit lands on the authority, then ``bye``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bosses.selectors import boss_ledger
from bosses.services import boss_tick
from bosses.verification import boss_verify
from shards.services import shard_create
from tests.support import processes

pytestmark = [pytest.mark.process, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built() -> Path:
    """sdk-cs built: the library, the example (and the driver and tests)."""
    mono = subprocess.run(["make", "--no-print-directory", "mono"], cwd=ROOT, capture_output=True, text=True)
    if mono.returncode != 0:
        pytest.fail(f"Mono (mcs, mono) is missing and could not be installed: {mono.stdout}{mono.stderr}")
    out = subprocess.run(
        ["make", "-C", "sdk-cs", "all"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    return ROOT / "sdk-cs" / "bin"


@pytest.mark.django_db(transaction=True)
def test_the_example_game_server_runs_on_the_built_library(built: Path, live_boss) -> None:
    _, token = shard_create(key="cs-dist-1", name="C# example")
    server, port = processes.start_server()
    try:
        out = subprocess.run(
            ["mono", str(built / "GameServer.exe"), f"ws://127.0.0.1:{port}", "cs-dist-1", token]
            + [live_boss.slug, "3", "10"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["flushed"] is True and summary["left"] is True and summary["refused"] == 0
    acked = summary["acked"]
    assert acked == summary["dealt"] > 0
    assert boss_ledger(boss_id=live_boss.pk).number("accepted") == acked
    boss_tick(boss_id=live_boss.pk, force=True)
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == acked and report.hp == live_boss.max_hp - acked
