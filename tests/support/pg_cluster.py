"""A PostgreSQL cluster of one test's own, to stop and start: ``initdb`` + ``pg_ctl``.

The shared PostgreSQL of the suite is never touched. The cluster lives in a temp dir, listens
on a free loopback port, trusts local connections and is removed at the end::

    with PgCluster() as pg:          # initdb + start (needs the PostgreSQL server binaries)
        url = pg.create_database("fight")   # a DATABASE_URL for a new, empty database
        pg.stop()                    # an outage: every connection refused from now on
        pg.start()                   # back, same data

``pg_cluster`` (a fixture) gives a started one and checks the ``process`` marker. PostgreSQL
refuses to run as root: as root the cluster is run by the ``postgres`` user. Tests skip when
the binaries are missing (``PG_BIN``, default ``/usr/lib/postgresql/<newest>/bin``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.markers import require_process_marker
from tools.stack import free_port

START_TIMEOUT_S = 60


def pg_bin() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``, or None when PostgreSQL's server is not installed."""
    given = os.environ.get("PG_BIN")
    candidates = [given] if given else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for path in candidates:
        if path and (Path(path) / "initdb").exists() and (Path(path) / "pg_ctl").exists():
            return Path(path)
    return None


class PgCluster:
    """One PostgreSQL cluster in a temp dir (see the module docstring)."""

    def __init__(self, *, port: int | None = None):
        bin_dir = pg_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found; set PG_BIN")
        self.bin = bin_dir
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
            )
        self.running = False

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        argv = [str(self.bin / tool), *args]
        if self._user is not None:
            argv = ["runuser", "-u", self._user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    @property
    def url(self) -> str:
        """The server's URL, without a database name."""
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        require_process_marker("postgres")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_TIMEOUT_S), "start"
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: connections are ended, as in an operator's restart;
        ``immediate``: as a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its DATABASE_URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"{self.url}/{name}"

    def wait_accepting(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), timeout=5)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def destroy(self) -> None:
        """Stop the server if it runs (immediately) and remove its files."""
        if self.running or (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster of this test's own (skips without the PostgreSQL server binaries)."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; set PG_BIN")
    require_process_marker("postgres")
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
