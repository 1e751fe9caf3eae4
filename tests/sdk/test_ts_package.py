"""The TypeScript SDK is an npm package of its own: ``npm pack`` in sdk-ts gives a tarball that
installs into an empty project, and its example game server (sdk-ts/examples/game-server.mjs)
runs on the installed package against a real platform (uvicorn + Redis), every acknowledged
hit landing on the authority; so does its player (sdk-ts/examples/player.mjs: a signed ticket,
PlayerClient attacks on a hosted shard). Needs Node 20+ and npm (the registry, or npm's cache, for ``ws``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bosses.selectors import boss_ledger
from bosses.services import boss_tick
from bosses.verification import boss_verify
from shards.services import shard_create
from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(420)]

SDK_TS = Path(__file__).resolve().parents[2] / "sdk-ts"


def _npm(*args: str, cwd: Path, timeout_s: float = 300) -> str:
    out = subprocess.run(
        ["npm", *args, "--no-audit", "--no-fund"], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    assert out.returncode == 0, f"npm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def game_dir(tmp_path_factory) -> Path:
    """An empty npm project with the packed SDK installed (nothing of the checkout's node_modules)."""
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed (Node 20+ is a requirement of the TypeScript SDK)")
    root = tmp_path_factory.mktemp("sdk-ts")
    _npm("ci", cwd=SDK_TS)
    packed = _npm("pack", "--pack-destination", str(root), cwd=SDK_TS).strip().splitlines()[-1]
    game = root / "game"
    game.mkdir()
    (game / "package.json").write_text('{"name": "game", "private": true, "type": "module"}')
    _npm("install", str(root / packed), cwd=game)
    return game


def test_the_package_holds_the_built_sdk_and_its_example(game_dir: Path) -> None:
    installed = game_dir / "node_modules" / "worldboss-sdk"
    meta = json.loads((installed / "package.json").read_text())
    assert meta["version"] == json.loads((SDK_TS / "package.json").read_text())["version"]
    for name in ("index.js", "index.d.ts", "client.js", "protocol.js", "tickets.js", "webhooks.js"):
        assert (installed / "dist" / "src" / name).is_file(), name
    assert (installed / "examples" / "game-server.mjs").is_file()
    assert (installed / "examples" / "player.mjs").is_file()
    assert not (installed / "dist" / "test").exists() and not (installed / "src").exists()
    assert set((game_dir / "node_modules").iterdir()) >= {installed, game_dir / "node_modules" / "ws"}


@pytest.mark.django_db(transaction=True)
def test_the_example_game_server_runs_on_the_installed_package(game_dir: Path, live_boss) -> None:
    _, token = shard_create(key="ts-dist-1", name="TypeScript distribution")
    example = game_dir / "node_modules" / "worldboss-sdk" / "examples" / "game-server.mjs"
    shutil.copy(example, game_dir / "game-server.mjs")  # run from the game's own folder
    server, port = processes.start_server()
    try:
        out = subprocess.run(
            ["node", "game-server.mjs", "--url", f"ws://127.0.0.1:{port}", "--shard", "ts-dist-1"]
            + [f"--token={token}", "--boss", live_boss.slug, "--players", "10", "--seconds", "3"],
            cwd=game_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["flushed"] is True and summary["left"] is True and summary["refused"] == 0
    # the state socket's snapshot (no sync tick runs here: the truth is still full HP)
    assert summary["truth"] == live_boss.max_hp
    acked = summary["acked"]
    assert acked == summary["dealt"] > 0
    assert boss_ledger(boss_id=live_boss.pk).number("accepted") == acked
    boss_tick(boss_id=live_boss.pk, force=True)
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == acked and report.hp == live_boss.max_hp - acked


@pytest.mark.django_db(transaction=True)
def test_the_player_client_attacks_a_hosted_shard_with_a_signed_ticket(game_dir: Path, live_boss) -> None:
    secret = "a-ticket-secret-of-thirty-two-bytes!"
    shard_create(key="ts-web-1", name="Hosted (TypeScript player)", kind="hosted")
    shutil.copy(
        game_dir / "node_modules" / "worldboss-sdk" / "examples" / "player.mjs", game_dir / "player.mjs"
    )
    server, port = processes.start_server(PLAYER_TICKET_KEYS=f"game-1:{secret}")
    try:
        out = subprocess.run(
            ["node", "player.mjs", "--url", f"ws://127.0.0.1:{port}", "--shard", "ts-web-1"]
            + ["--boss", live_boss.slug, "--key-id", "game-1", "--secret", secret, "--attacks", "5"],
            cwd=game_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        # the ticket's sub is the player; every attack was acknowledged with its damage
        assert summary["player"] == "ts-hero" and summary["refused"] == 0 and summary["damage"] > 0
        # the hosted shard sends what it acknowledged to the authority (its own 100 ms tick)
        wait_until(
            lambda: boss_ledger(boss_id=live_boss.pk).number("accepted") == summary["damage"],
            what="the hosted shard's delta",
        )
    finally:
        server.stop()
    boss_tick(boss_id=live_boss.pk, force=True)
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == summary["damage"] and report.hp == live_boss.max_hp - summary["damage"]
