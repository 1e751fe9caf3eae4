"""The SDK is a distribution of its own: ``pip install ./sdk`` into a fresh virtualenv gives a
package that works without Django, and the example game server runs on it against a real
platform (uvicorn + Redis), every acknowledged hit landing on the authority.

The virtualenv is built once per module from PyPI (``websockets``, and setuptools for the
build); the programs in it run with a working directory outside the checkout and an
environment that names nothing of the checkout or its ``.venv``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import worldboss_sdk
from bosses.selectors import boss_ledger
from bosses.services import boss_tick
from bosses.verification import boss_verify
from shards.services import shard_create
from tests.support import processes
from worldboss_sdk.protocol import as_dict

pytestmark = [pytest.mark.process, pytest.mark.timeout(420)]

CHECKOUT = Path(__file__).resolve().parents[2]
SDK_DIR = CHECKOUT / "sdk"
EXAMPLE = CHECKOUT / "examples" / "game_server.py"
# What would let a child find this checkout's code or its .venv instead of its own install.
LEAKY_ENV = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"}

INSPECT = """
import importlib.metadata as md, json, os, sys
import worldboss_sdk
from worldboss_sdk import BufferFull, ShardClient
from worldboss_sdk import buffer, client, errors, protocol
package = os.path.dirname(worldboss_sdk.__file__)
print(json.dumps({
    "file": worldboss_sdk.__file__,
    "version": worldboss_sdk.__version__,
    "metadata_version": md.version("worldboss-sdk"),
    "requires": md.requires("worldboss-sdk"),
    "distributions": sorted(d.metadata["Name"].lower() for d in md.distributions()),
    "files": sorted(f for f in os.listdir(package) if f != "__pycache__"),
    "sys_path": sys.path,
    "protocol": protocol.as_dict(),
    "client_is_exported": ShardClient is client.ShardClient and BufferFull is errors.BufferFull,
}))
"""


@dataclass
class Venv:
    """A fresh virtualenv with the SDK installed, and a working directory outside the checkout."""

    path: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        """Run this virtualenv's python with ``args`` in the working directory."""
        return subprocess.run(
            [str(self.python), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory) -> Venv:
    """``python -m venv`` + ``pip install <checkout>/sdk`` (from PyPI, nothing of .venv)."""
    root = tmp_path_factory.mktemp("sdk-dist")
    venv = Venv(path=root / "venv", workdir=root / "game")
    venv.workdir.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv.path)], check=True, timeout=120)
    # setuptools builds in the source folder (build/, *.egg-info): install from a copy of
    # ./sdk as committed, so the checkout stays clean and nothing built earlier is reused.
    source = shutil.copytree(
        SDK_DIR, root / "sdk", ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    )
    out = venv.run(
        "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source), timeout_s=300
    )
    assert out.returncode == 0, f"pip install ./sdk failed:\n{out.stdout}\n{out.stderr}"
    return venv


def test_the_installed_sdk_works_without_django(sdk_venv: Venv) -> None:
    out = sdk_venv.run("-c", INSPECT, timeout_s=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)

    # the package imported is the venv's copy, not the checkout's
    installed = Path(info["file"]).resolve()
    assert installed.is_relative_to(sdk_venv.path.resolve()), installed
    assert not installed.is_relative_to(CHECKOUT), installed
    assert not [p for p in info["sys_path"] if p and Path(p).resolve().is_relative_to(CHECKOUT)]

    # one runtime dependency, and nothing else came with it
    assert info["requires"] == ["websockets>=14"]
    assert set(info["distributions"]) - {"pip", "setuptools"} == {"websockets", "worldboss-sdk"}

    # exactly the checkout's modules, typed (py.typed ships), at the checkout's version
    source = sorted(p.name for p in (SDK_DIR / "worldboss_sdk").iterdir() if p.suffix == ".py")
    assert info["files"] == sorted([*source, "py.typed"])
    assert info["version"] == info["metadata_version"] == worldboss_sdk.__version__
    assert info["protocol"] == json.loads(json.dumps(as_dict()))
    assert info["client_is_exported"] is True

    django = sdk_venv.run("-c", "import django", timeout_s=60)
    assert django.returncode != 0
    assert "ModuleNotFoundError: No module named 'django'" in django.stderr


@pytest.mark.django_db(transaction=True)
def test_the_example_game_server_runs_on_the_installed_sdk(sdk_venv: Venv, live_boss) -> None:
    _, token = shard_create(key="dist-1", name="Distribution 1")
    server, port = processes.start_server()
    try:
        out = sdk_venv.run(
            str(EXAMPLE),
            *("--url", f"ws://127.0.0.1:{port}", "--shard", "dist-1", f"--token={token}"),
            *("--boss", live_boss.slug, "--players", "40", "--seconds", "3", "--tick-ms", "50"),
            timeout_s=120,
        )
    finally:
        server.stop()
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    summary = json.loads(out.stdout.strip().splitlines()[-1])

    # everything the game dealt was acknowledged, and the session said goodbye cleanly
    assert summary["flushed"] is True and summary["left"] is True
    assert summary["refused"] == 0 and summary["errors"] == {}
    acked = summary["acked"]
    assert acked == summary["dealt"] > 0

    # what the SDK reports as acknowledged is what the authority accepted, then applied
    assert boss_ledger(boss_id=live_boss.pk).number("accepted") == acked
    boss_tick(boss_id=live_boss.pk, force=True)
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == acked and report.hp == live_boss.max_hp - acked
