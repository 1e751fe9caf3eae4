"""The startup check of the authority's persistence, in real processes (liveops/startup.py).

uvicorn serving ``liveops.asgi`` and ``celery -A liveops worker`` are started as
subprocesses against real servers of the test (one without AOF, one with the project's AOF
fsync-always command line, a port where nothing listens). Asserted: the exit status and the
one line an operator reads; a warning (and serving) in development, a refusal in production.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.config import ERROR_PREFIX, EXIT_STATUS
from liveops.startup import REFUSAL_PREFIX
from tests.support.redis_servers import RedisServer, redis_server_binary
from tools.stack import ROOT, celery_worker_argv, free_port

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

RUN_TIMEOUT_S = 60


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUTHORITY_", "DJANGO_ENV", "PYTEST_", "COV_"))
    }
    base = redis_url.rsplit("/", 1)[0]
    env.update(
        DJANGO_SETTINGS_MODULE="liveops.settings",
        REDIS_URL=f"{base}/0",
        BROKER_URL=f"{base}/1",
        CHANNELS_URL=f"{base}/2",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        # what DJANGO_ENV=production requires (liveops/settings.py)
        SECRET_KEY="startup-test-" + "k" * 40 + "0123456789",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


UVICORN = [sys.executable, "-m", "uvicorn", "liveops.asgi:application", "--port"]
BUILD_APP = [sys.executable, "-c", "import liveops.asgi; print('app built')"]


@pytest.fixture(scope="module")
def no_aof():
    server = RedisServer(redis_server_binary(), extra=("--appendonly", "no"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aof_always():
    server = RedisServer(redis_server_binary())
    yield server
    server.stop()


def test_production_asgi_refuses_to_start_on_a_redis_without_aof(no_aof):
    done = _run([*UVICORN, str(free_port())], _env(no_aof.url(), DJANGO_ENV="production"))
    assert done.returncode == 1, done.stderr
    line = _last_line(done.stderr)
    assert line.startswith(f"{REFUSAL_PREFIX}: asgi: the authority (Redis 7."), done.stderr
    assert "AUTHORITY_DURABILITY=local: appendonly is no" in line
    assert "Traceback" not in done.stderr


def test_development_asgi_warns_loudly_and_starts(no_aof):
    done = _run(BUILD_APP, _env(no_aof.url()))
    assert done.returncode == 0, done.stderr
    assert "app built" in done.stdout
    assert "!!! asgi: the authority (Redis 7." in done.stderr
    assert "appendonly is no" in done.stderr


def test_production_asgi_starts_on_a_redis_that_fsyncs_every_write(aof_always):
    done = _run(BUILD_APP, _env(aof_always.url(), DJANGO_ENV="production"))
    assert done.returncode == 0, done.stderr
    assert "app built" in done.stdout
    assert "!!!" not in done.stderr
    assert "persists every write (AOF, appendfsync always); durability local" in done.stderr


def test_the_flag_overrides_the_environment_both_ways(no_aof):
    refused = _run(BUILD_APP, _env(no_aof.url(), AUTHORITY_REQUIRE_PERSISTENCE="1"))
    assert refused.returncode == 1
    assert _last_line(refused.stderr).startswith(f"{REFUSAL_PREFIX}: asgi:")
    allowed = _run(BUILD_APP, _env(no_aof.url(), DJANGO_ENV="production", AUTHORITY_REQUIRE_PERSISTENCE="0"))
    assert allowed.returncode == 0, allowed.stderr


def test_replica_mode_without_a_replica_is_refused(aof_always):
    done = _run(BUILD_APP, _env(aof_always.url(), DJANGO_ENV="production", AUTHORITY_DURABILITY="replica"))
    assert done.returncode == 1
    assert "0 replica(s) connected, 1 needed" in _last_line(done.stderr)


def test_an_unreachable_redis_is_one_clear_line_not_a_traceback():
    url = f"redis://127.0.0.1:{free_port()}/0"
    refused = _run(BUILD_APP, _env(url, DJANGO_ENV="production"))
    assert refused.returncode == 1
    line = _last_line(refused.stderr)
    assert line.startswith(f"{REFUSAL_PREFIX}: asgi: cannot check the authority's persistence:")
    assert "did not answer within 1 s" in line and "(AUTHORITY_REQUIRE_PERSISTENCE is on)" in line
    assert "Traceback" not in refused.stderr
    warned = _run(BUILD_APP, _env(url))
    assert warned.returncode == 0, warned.stderr
    assert "starting anyway, calls fail with authority_unavailable until it answers" in warned.stderr


def test_production_worker_refuses_to_start_on_a_redis_without_aof(no_aof):
    done = _run(
        celery_worker_argv(queues="ticks", concurrency=1), _env(no_aof.url(), DJANGO_ENV="production")
    )
    assert done.returncode == 1, done.stderr[-3000:]
    line = _last_line(done.stderr)
    assert line.startswith(f"{REFUSAL_PREFIX}: worker: the authority (Redis 7."), done.stderr[-3000:]
    assert "appendonly is no" in line
    assert "Traceback" not in done.stderr


def test_a_development_worker_warns_and_becomes_ready(no_aof):
    proc = subprocess.Popen(
        celery_worker_argv(queues="ticks", concurrency=1),
        cwd=ROOT,
        env=_env(no_aof.url()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the worker exits; the test timeout bounds it
            seen.append(line)
            if "ready." in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    output = "".join(seen)
    assert "ready." in output, output[-3000:]
    assert "!!! worker: the authority (Redis 7." in output


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AUTHORITY_DURABILITY", "fast", "AUTHORITY_DURABILITY='fast': expected one of local, replica"),
        (
            "AUTHORITY_REPLICA_TIMEOUT_MS",
            "-5",
            "AUTHORITY_REPLICA_TIMEOUT_MS='-5': expected a duration from 1 ms to 1500 ms",
        ),
        (
            "AUTHORITY_REQUIRE_PERSISTENCE",
            "maybe",
            "AUTHORITY_REQUIRE_PERSISTENCE='maybe': expected a boolean",
        ),
        ("DJANGO_ENV", "prod", "DJANGO_ENV='prod': expected one of development, production"),
        (
            "REDIS_URL",
            "localhost:6379",
            "REDIS_URL='localhost:6379': expected a URL starting with redis://, rediss://, unix://",
        ),
    ],
)
def test_a_bad_setting_is_one_line_at_start_for_every_entry_point(variable, value, message):
    env = _env("redis://127.0.0.1:1/0", **{variable: value})
    if variable == "REDIS_URL":
        env.update(REDIS_URL=value, BROKER_URL="redis://127.0.0.1:1/1", CHANNELS_URL="redis://127.0.0.1:1/2")
    for argv in (
        [sys.executable, "manage.py", "check"],
        BUILD_APP,
        celery_worker_argv(queues="ticks", concurrency=1),
    ):
        done = _run(argv, env)
        assert done.returncode == EXIT_STATUS, (argv, done.stderr[-2000:])
        # one line, no traceback
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"{ERROR_PREFIX}: {message}"), (argv, line)
