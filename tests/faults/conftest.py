"""Helpers of the fault tests: real worker + beat with fast scans, a shard process, polling."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from tests.support import processes
from tests.support.pg_cluster import pg_cluster
from tests.support.waiting import wait_until

__all__ = ["FAST", "SdkProcess", "ShardProcess", "pg_cluster", "start_server", "wait_until"]

FAST = {"CRASH_SCAN_INTERVAL_MS": "200", "SAGA_RESUME_INTERVAL_MS": "500"}


class ShardProcess(processes.Proc):
    """tests/faults/shard_proc.py as a real process; ``lines(word)`` parses what it printed."""

    def __init__(self, *args: str, **env: str):
        super().__init__(
            "shard", [sys.executable, "-m", "tests.faults.shard_proc", *args], processes.subprocess_env(**env)
        )

    def lines(self, word: str) -> list[dict]:
        return [
            json.loads(line.split(" ", 1)[1])
            for line in self.output().splitlines()
            if line.startswith(word + " ")
        ]

    def wait_line(self, word: str, timeout_s: float = 20.0) -> dict:
        self.wait_for_output(word + " ", timeout_s)
        return self.lines(word)[-1]

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


@pytest.fixture
def stack(transactional_db):
    """A real worker (ticks + sagas) and beat with a 200 ms crash scan."""
    procs = [processes.start_worker(**FAST), processes.start_beat(**FAST)]
    yield procs
    for proc in reversed(procs):
        proc.discard()


def _started(cls):
    """Start ``cls`` processes for one test and kill every one of them at its end."""
    started: list = []

    def start(*args: str, **env: str):
        proc = cls(*args, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.resume()
        if proc.popen.poll() is None:
            proc.kill9()


@pytest.fixture
def shard_procs():
    """Shard processes started by a test; all killed at the end."""
    yield from _started(ShardProcess)


def start_server(**env: str) -> tuple[processes.Proc, str]:
    """A real uvicorn (the platform's ASGI app) on a free port; returns it and its ws:// URL."""
    proc, port = processes.start_server(**env)
    return proc, f"ws://127.0.0.1:{port}"


class SdkProcess(ShardProcess):
    """tests/faults/sdk_proc.py: a game server on the real SDK, as its own process."""

    def __init__(self, *args: str, **env: str):
        processes.Proc.__init__(
            self,
            "sdk",
            [sys.executable, "-m", "tests.faults.sdk_proc", *args],
            processes.subprocess_env(**env),
        )


@pytest.fixture
def platform(transactional_db):
    """uvicorn + worker + beat (200 ms crash scan) on the test Redis and database."""
    server, url = start_server()
    procs = [server]
    try:
        procs += [processes.start_worker(**FAST), processes.start_beat(**FAST)]
        yield url
    finally:
        for proc in reversed(procs):
            proc.discard()


@pytest.fixture
def sdk_procs():
    """SDK game-server processes started by a test; all killed at the end."""
    yield from _started(SdkProcess)
