"""``make demo`` / ``manage.py demo``: a fresh clone with no Redis reachable reaches a live fight,
exits cleanly with ``--duration``, re-runs (the demo boss is reset), stops on Ctrl-C and when
one of its parts dies, and leaves nothing running in every case.

The clone gets the project's committed tree (``git clone`` of this checkout) and uses this
checkout's ``.venv`` through make's ``VENV``/``STAMP`` variables (installing a new venv needs
the network); everything else — migrate, Redis, uvicorn, worker, beat, simulator — is the
real ``make demo`` path.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.process]

ROOT = processes.ROOT
DEMO_TIMEOUT_S = 150


def _closed_port() -> int:
    return processes.free_port()  # nothing listens there once the probe socket is closed


def _env(redis_port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "BROKER_URL", "CHANNELS_URL", "TEST_DB_NAME", "DJANGO_SETTINGS_MODULE")
    }
    env.update(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of the committed project, with a make stamp so the existing venv is used."""
    target = tmp_path_factory.mktemp("demo") / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    stamp = target / ".venv-stamp"
    time.sleep(1.1)  # the stamp must be newer than the clone's pyproject.toml
    stamp.touch()
    return target


def _make_demo(clone: Path, args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "-s", "demo", f"VENV={ROOT / '.venv'}", f"STAMP={clone / '.venv-stamp'}", f"ARGS={args}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _procs_of(clone: Path) -> list[str]:
    """Processes still running from the clone (cwd inside it, or its path on the command line)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(clone)) or str(clone) in cmd:
            found.append(f"{pid}: {cmd.strip()}")
    return found


def _assert_nothing_running(clone: Path, output: str, port: int) -> None:
    deadline = time.monotonic() + 5
    while _procs_of(clone) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _procs_of(clone) == [], output
    from tools.stack import port_open

    assert not port_open("127.0.0.1", port), f"port {port} still open"
    started = re.search(r"on 127\.0\.0\.1:(\d+)", output)
    if started:
        assert not port_open("127.0.0.1", int(started.group(1))), "the demo's Redis is still running"


def _progress(output: str) -> list[tuple[int, int, int, int]]:
    """(hp, version, hits/s, shards online) of every progress line."""
    rows = []
    for m in re.finditer(
        r"HP ([\d,]+)/[\d,]+ .*? v(\d+) .*?\| ([\d,]+) hits/s, [\d,]+ dmg/s \| shards online (\d+)", output
    ):
        rows.append(tuple(int(g.replace(",", "")) for g in m.groups()))
    return rows


def _wait_for(proc: subprocess.Popen, needle: str, timeout_s: float, lines: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"demo exited before {needle!r}:\n{''.join(lines)}")
        lines.append(line)
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} within {timeout_s}s:\n{''.join(lines)}")


def test_make_demo_in_a_fresh_clone_without_redis_reaches_a_live_fight_and_exits_cleanly(clone):
    redis_port = _closed_port()
    port = processes.free_port()
    proc = _make_demo(clone, f"--duration 8 --port {port} --players 12 --shards 4", _env(redis_port))
    try:
        output, _ = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    # REDIS_URL pointed at a closed port: the demo started its own server under .demo/
    assert f"127.0.0.1:{redis_port}" not in output.split("redis:", 1)[1].splitlines()[0]
    assert re.search(r"redis: started (redis-server on PATH|embedded Valkey)", output), output
    assert (clone / ".demo" / "redis").is_dir()
    assert re.search(r"log in as demo-admin / \S+", output)
    assert f"http://127.0.0.1:{port}/ops/bosses/demo/" in output
    assert f"http://127.0.0.1:{port}/play/demo/?shard=demo-h1" in output
    assert f"http://127.0.0.1:{port}/admin/" in output
    # a live fight: HP fell, versions rose, hits flowed from every shard
    rows = _progress(output)
    assert len(rows) >= 2, output
    assert rows[-1][0] < rows[0][0] and rows[-1][1] > rows[0][1]
    assert max(r[2] for r in rows) > 0 and max(r[3] for r in rows) == 4
    assert "--duration 8 s reached" in output
    assert "verify_boss: OK" in output
    _assert_nothing_running(clone, output, port)


def _manage_demo(clone: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # not through make: make itself reports an interrupted recipe as an error
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "demo", *args],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_demo_reruns_and_stops_cleanly_on_ctrl_c(clone):
    """Run twice in one clone: the second run resets the demo boss; Ctrl-C verifies and cleans up."""
    first = _manage_demo(
        clone,
        ["--duration", "2", "--port", str(processes.free_port()), "--players", "2"],
        _env(_closed_port()),
    )
    out_first, _ = first.communicate(timeout=DEMO_TIMEOUT_S)
    assert first.returncode == 0, out_first
    fight = int(re.search(r"fight #(\d+)", out_first).group(1))

    port = processes.free_port()
    proc = _manage_demo(
        clone,
        ["--port", str(port), "--players", "8", "--shards", "2", "--redis", "embedded"],
        _env(_closed_port()),
    )
    lines: list[str] = []
    try:
        _wait_for(proc, "embedded Valkey", 60, lines)
        _wait_for(proc, "fight #", 60, lines)
        assert f"fight #{fight + 1} (reset from the last run)" in lines[-1]
        # wait for progress with damage, then Ctrl-C the whole make process group
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _wait_for(proc, "hits/s", 60, lines)
            rows = _progress(lines[-1])
            if rows and rows[0][1] > 3:
                break
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the foreground process
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert "stopping: Ctrl-C received" in output, output
    assert "verify_boss: OK" in output
    assert proc.returncode == 0, output
    _assert_nothing_running(clone, output, port)


def test_demo_restarts_a_dead_worker_and_stops_everything_when_another_part_dies(clone):
    """The worker and beat are started again when they die (as a deployment's process manager
    does); the death of any other part (here the ASGI server) ends the demo, children and all."""
    port = processes.free_port()
    proc = _make_demo(clone, f"--port {port} --players 4 --shards 2", _env(_closed_port()))
    lines: list[str] = []
    try:
        _wait_for(proc, "hits/s", 90, lines)
        # the tick worker (-Q ticks alone; the saga worker is restarted the same way)
        worker = next(p for p in _procs_of(clone) if "celery" in p and " -Q ticks " in p)
        os.kill(int(worker.split(":", 1)[0]), signal.SIGKILL)
        _wait_for(proc, "tick exited on its own (exit -9); started again (1 of 5)", 30, lines)
        _wait_for(proc, "hits/s", 30, lines)
        asgi = next(p for p in _procs_of(clone) if "uvicorn" in p)
        os.kill(int(asgi.split(":", 1)[0]), signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert "stopping: a part died: asgi" in output, output
    assert proc.returncode != 0
    _assert_nothing_running(clone, output, port)


def test_kill_9_of_the_demo_takes_every_child_with_it(clone):
    """``kill -9`` of the demo process runs none of its cleanup: its children (Redis, uvicorn,
    the Celery worker and beat) still end with it, within 5 s,
    and free the port (PR_SET_PDEATHSIG on each child, tools/stack.py)."""
    port = processes.free_port()
    proc = _manage_demo(clone, ["--port", str(port), "--players", "4", "--shards", "2"], _env(_closed_port()))
    lines: list[str] = []
    try:
        _wait_for(proc, "hits/s", 90, lines)
        children = [p for p in _procs_of(clone) if int(p.split(":", 1)[0]) != proc.pid]
        for part in ("uvicorn", " worker ", " beat ", "redis"):
            assert any(part in p for p in children), (part, children)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = wait_until(lambda: not _procs_of(clone), timeout_s=5, what="every child of the demo to end")
        assert left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _procs_of(clone):  # a failed run must not leave them behind either
            os.kill(int(p.split(":", 1)[0]), signal.SIGKILL)
    from tools.stack import port_open

    assert not port_open("127.0.0.1", port), f"port {port} still open"


def test_a_refused_viewer_backs_off_and_the_demo_goes_on(clone):
    """Other clients hold every socket the per-address cap allows when the simulated viewer
    connects: it is refused (rate_limited), the demo says so, backs off and tries again, and
    ends normally once the sockets are free (it used to end with "viewer refused")."""
    from websockets.sync.client import connect

    from tools.stack import port_open

    port = processes.free_port()
    env = {**_env(_closed_port()), "MAX_SOCKETS_PER_ADDRESS": "2"}
    proc = _manage_demo(
        clone, ["--duration", "15", "--port", str(port), "--players", "2", "--shards", "2"], env
    )
    held = []
    lines: list[str] = []
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=90, what="the demo's server")
        # before the simulator starts (it waits for /readyz): the cap is reached by others
        held = [connect(f"ws://127.0.0.1:{port}/ws/bosses/demo/", open_timeout=10) for _ in range(2)]
        _wait_for(proc, "viewer refused (rate_limited", 60, lines)
        for ws in held:
            ws.close()
        rest, _ = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        for ws in held:
            ws.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "it backs off and tries again, the fight goes on" in output
    assert re.search(r"viewer: refused rate_limited x\d+", output), output
    assert "verify_boss: OK" in output and "simulator failed" not in output
    _assert_nothing_running(clone, output, port)


def test_demo_on_a_cluster_uses_broker_url_and_says_in_one_line_when_there_is_none(clone):
    """REDIS_URL names a node of a Redis Cluster (REDIS_CLUSTER=1) and BROKER_URL a standalone
    Redis: the demo's parts use that broker (it used to derive REDIS_URL db + 1, which a
    cluster refuses, and die after 30 s). With REDIS_CLUSTER=auto and no BROKER_URL it says in
    one line what is wrong, at once."""
    from tests.support.topologies import Node, redis_server, start_cluster

    cluster = start_cluster()
    broker = Node(redis_server())
    try:
        port = processes.free_port()
        env = {**_env(_closed_port()), "REDIS_URL": cluster.url, "REDIS_CLUSTER": "1"}
        env["BROKER_URL"] = f"redis://127.0.0.1:{broker.port}/0"
        proc = _manage_demo(
            clone, ["--duration", "6", "--port", str(port), "--players", "2", "--shards", "2"], env
        )
        output, _ = proc.communicate(timeout=DEMO_TIMEOUT_S)
        assert proc.returncode == 0, output
        assert f"broker: BROKER_URL redis://127.0.0.1:{broker.port}/0" in output
        assert "verify_boss: OK" in output
        assert broker.client().dbsize() > 0  # Celery's queues and beat lived there
        _assert_nothing_running(clone, output, port)

        env = {**_env(_closed_port()), "REDIS_URL": cluster.url, "REDIS_CLUSTER": "auto"}
        proc = _manage_demo(clone, ["--duration", "6", "--port", str(port)], env)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode != 0
        errors = [line for line in output.splitlines() if "set BROKER_URL to a standalone Redis" in line]
        assert len(errors) == 1 and "Redis Cluster" in errors[0], output
        assert "Traceback" not in output
        _assert_nothing_running(clone, output, port)
    finally:
        broker.stop()
        cluster.stop()


def test_demo_keeps_serving_after_the_boss_dies_until_the_duration_or_ctrl_c(clone):
    """``--duration`` longer than the fight: once the boss is dead the simulated players stop,
    and the player page, admin and report stay up until the duration ends or Ctrl-C."""
    import urllib.request

    port = processes.free_port()
    proc = _manage_demo(
        clone,
        ["--duration", "300", "--port", str(port), "--players", "4", "--shards", "2", "--boss-hp", "3000"],
        _env(_closed_port()),
    )
    lines: list[str] = []
    try:
        _wait_for(proc, "stay up until --duration 300 s ends", 120, lines)
        base = f"http://127.0.0.1:{port}"
        for path in (
            "/play/demo/?shard=demo-h1",
            "/admin/login/",
            "/ops/bosses/demo/fights/1/report/",
            "/readyz",
        ):
            with urllib.request.urlopen(base + path, timeout=10) as reply:  # a login redirect is followed
                assert reply.status == 200, path
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "the boss is defeated" in output, output
    assert "stopping: Ctrl-C received" in output, output
    assert "verify_boss: OK" in output
    _assert_nothing_running(clone, output, port)


@pytest.mark.parametrize(
    "args, message",
    [
        ("--duration 0", "--duration"),
        ("--shards 0", "--shards"),
        ("--boss-hp 0", "--boss-hp"),
        ("--players -1", "--players"),
    ],
)
def test_demo_refuses_bad_flags_before_starting_anything(clone, args, message):
    port = processes.free_port()
    proc = _make_demo(clone, f"{args} --port {port}", _env(_closed_port()))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert message in output and "redis: started" not in output
    _assert_nothing_running(clone, output, port)


def test_demo_without_simulation_serves_the_fight_for_real_players(clone):
    port = processes.free_port()
    proc = _manage_demo(
        clone, ["--no-sim", "--duration", "2", "--port", str(port), "--shards", "3"], _env(_closed_port())
    )
    output, _ = proc.communicate(timeout=DEMO_TIMEOUT_S)
    assert proc.returncode == 0, output
    assert "shards: demo-h1, demo-h2, demo-h3" in output  # all platform-hosted: people play
    assert "simulated:" not in output
    assert all(r[2] == 0 for r in _progress(output)) and _progress(output)
    assert "verify_boss: OK" in output
    _assert_nothing_running(clone, output, port)


def test_demo_rides_through_a_kill_9_of_its_redis(clone):
    """The demo on a Redis it did not start (AOF, fsync always): that Redis is killed with
    ``kill -9`` mid-fight and restarted 3 s later on the same data. The progress line says the
    authority is away instead of dying, the fight resumes, and verify_boss holds at the end."""
    from tests.support.redis_servers import RedisServer, redis_server_binary

    server = RedisServer(redis_server_binary())
    port = processes.free_port()
    proc = _manage_demo(clone, ["--duration", "14", "--port", str(port), "--players", "6"], _env(server.port))
    lines: list[str] = []
    try:
        _wait_for(proc, "hits/s", 90, lines)
        argv = server.popen.args
        server.popen.kill()
        server.popen.wait(timeout=10)
        time.sleep(3)  # the scenario: Redis stays down for 3 s mid-demo
        server.popen = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        rest, _ = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        server.stop()
    output = "".join(lines) + rest
    assert "authority unreachable" in output, output
    assert proc.returncode == 0, output
    rows = _progress(rest.split("authority unreachable")[-1])
    assert rows and rows[-1][1] > 1, output  # progress again after the outage
    assert "verify_boss: OK" in output
    _assert_nothing_running(clone, output, port)
