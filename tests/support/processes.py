"""Real processes for tests: Celery worker and beat, an ASGI server. Always cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.support.markers import require_process_marker
from tools.stack import celery_beat_argv, celery_worker_argv, die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """A DATABASE_URL for the test database, so subprocesses see what the test wrote."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


# Simulator mode (free-form ?player=<id>, docs/security.md): off in a child process unless a
# test asks for it, ``start_server(**SIMULATOR_ENV)``, whatever the developer's shell says.
SIMULATOR_ENV = {"LIVEOPS_SIMULATOR_PLAYERS": "1"}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: same Redis dbs and test database as this test."""
    env = dict(os.environ)
    env.pop("LIVEOPS_SIMULATOR_PLAYERS", None)
    env.update(
        DJANGO_SETTINGS_MODULE="liveops.settings",
        REDIS_URL=settings.REDIS_URL,
        BROKER_URL=settings.BROKER_URL,
        CHANNELS_URL=settings.CHANNELS_URL,
        DATABASE_URL=test_database_url(),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    """A child process with its output in a temp file; ``stop()`` kills its process group, and
    it dies with this process even when that is killed outright (``die_with_parent``)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        require_process_marker(name)
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see die_with_parent
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.popen.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no {needle!r} after {timeout_s}s:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.signal(signal.SIGKILL)  # stragglers of the group (pool children)

    def discard(self) -> None:
        """End a process whose shutdown no test looks at (a fixture's teardown) at once.

        A Celery worker's warm shutdown alone takes about 2.5 s; the test is over, its Redis
        dbs are flushed and its database emptied next, so nothing is lost by a SIGKILL.
        """
        if self.popen.poll() is None:
            self.kill9()
        self.signal(signal.SIGKILL)


def start_server(*, port: int | None = None, host: str = "127.0.0.1", **env: str) -> tuple[Proc, int]:
    """A real uvicorn serving liveops.asgi with the production WebSocket flags
    (transport.hub.UVICORN_WS_ARGS); returns once Django answers HTTP on ``host:port``
    (``host``: the loopback, or the host's address on a fault rig's link, tools/faults)."""
    import urllib.error
    import urllib.request

    from transport.hub import UVICORN_WS_ARGS

    port = port or free_port()
    proc = Proc(
        "uvicorn",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "liveops.asgi:application",
            "--host",
            host,
            "--port",
            str(port),
            *UVICORN_WS_ARGS,
        ],
        subprocess_env(**env),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{host}:{port}/api/bosses/none/state", timeout=2)
        except urllib.error.HTTPError:
            return proc, port  # Django answered (404 for that slug): serving
        except OSError as exc:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"uvicorn did not start:\n{proc.output()[-3000:]}") from exc
            time.sleep(0.05)
        else:
            return proc, port


def start_worker(*, queues: str = "ticks,sagas", concurrency: int = 4, **env: str) -> Proc:
    """A real Celery worker (thread pool) on the test broker; returns once it is ready."""
    proc = Proc(
        "worker",
        celery_worker_argv(queues=queues, concurrency=concurrency),
        subprocess_env(**env),
    )
    proc.wait_for_output("ready.")
    return proc


def start_beat(**env: str) -> Proc:
    """A real Celery beat with the project's schedule (the ~100 ms sync tick)."""
    schedule = tempfile.NamedTemporaryFile(prefix="beat-", delete=False).name
    os.unlink(schedule)
    proc = Proc(
        "beat",
        celery_beat_argv(schedule=schedule),
        subprocess_env(**env),
    )
    proc.wait_for_output("beat: Starting")
    return proc
