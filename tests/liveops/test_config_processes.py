"""A bad environment variable stops every process at start with one line and exit status 2.

Real processes, as a deployment starts them (Procfile, README "Other commands"): ``manage.py``
commands, uvicorn serving ``liveops.asgi``, the Celery worker and beat. Asserted: the exit
status, the single line on stderr (the variable, what it got, what it accepts) and no
traceback. The values are the ones that used to end ``manage.py check`` with a ValueError
traceback (core/config.py, docs/deploy.md).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from core.config import ERROR_PREFIX, EXIT_STATUS
from tests.support.processes import ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

RUN_TIMEOUT_S = 60
CELERY = [sys.executable, "-m", "celery", "-A", "liveops"]
PROCESSES = {
    "manage.py check": [sys.executable, "manage.py", "check"],
    "manage.py migrate": [sys.executable, "manage.py", "migrate", "--check"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "liveops.asgi:application", "--port", "0"],
    "celery worker": [*CELERY, "worker", "-Q", "ticks", "--pool", "threads", "--concurrency", "1"],
    "celery beat": [*CELERY, "beat", "-s", os.devnull],
}
BAD = {
    "SYNC_TICK_INTERVAL_MS": ("abc", "expected a duration from 1 ms to 1 min"),
    "ARCHIVE_INTERVAL_MS": ("1e9x", "expected a duration from 1 ms to 1 h"),
    "MAX_SOCKETS_PER_ADDRESS": ("many", "expected a whole number from 0 to 1000000"),
    "WEBHOOK_MAX_ATTEMPTS": ("0", "expected a whole number from 1 to 1000"),
    "LOG_LEVEL": ("loud", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
}


def _env(**extra: str) -> dict[str, str]:
    """This test's environment (its own Redis dbs) without the variables under test."""
    env = {k: v for k, v in os.environ.items() if k not in BAD and not k.startswith(("PYTEST_", "COV_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="liveops.settings",
        REDIS_URL=settings.REDIS_URL,
        BROKER_URL=settings.BROKER_URL,
        CHANNELS_URL=settings.CHANNELS_URL,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _the_one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == EXIT_STATUS, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("process", "variable"),
    [
        ("manage.py check", "SYNC_TICK_INTERVAL_MS"),
        ("manage.py check", "ARCHIVE_INTERVAL_MS"),
        ("manage.py check", "MAX_SOCKETS_PER_ADDRESS"),
        ("manage.py migrate", "WEBHOOK_MAX_ATTEMPTS"),
        ("uvicorn", "SYNC_TICK_INTERVAL_MS"),
        ("uvicorn", "MAX_SOCKETS_PER_ADDRESS"),
        ("celery worker", "ARCHIVE_INTERVAL_MS"),
        ("celery beat", "SYNC_TICK_INTERVAL_MS"),
        ("celery beat", "LOG_LEVEL"),
    ],
)
def test_a_bad_value_stops_the_process_with_one_line_and_exit_status_2(process, variable):
    raw, expected = BAD[variable]
    line = _the_one_line(_run(PROCESSES[process], _env(**{variable: raw})))
    assert line.startswith(f"{ERROR_PREFIX}: {variable}={raw!r}: {expected}"), line


def test_a_password_in_a_bad_url_is_not_shown():
    line = _the_one_line(_run(PROCESSES["manage.py check"], _env(BROKER_URL="redis://:hunter2@broker:x/1")))
    assert line.startswith(f"{ERROR_PREFIX}: BROKER_URL='redis://:***@broker:x/1': not a URL"), line
    assert "hunter2" not in line


def test_good_values_in_any_unit_start():
    done = _run(
        PROCESSES["manage.py check"],
        _env(
            SYNC_TICK_INTERVAL_MS="100ms",
            ARCHIVE_INTERVAL_MS="2s",
            MAX_SOCKETS_PER_ADDRESS="64",
            LOG_LEVEL="info",
        ),
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
