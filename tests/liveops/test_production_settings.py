"""DJANGO_ENV=production: DEBUG off, a real SECRET_KEY and ALLOWED_HOSTS required (one line at
start otherwise), the HTTPS settings on, and ``manage.py check --deploy`` clean; development
keeps its zero-setup defaults. Settings run in subprocesses, as a deployment starts them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from core.config import EXIT_STATUS
from transport.views import RedactingExceptionReporterFilter

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

PRINT = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k, None) for k in "
    "['DEBUG','ALLOWED_HOSTS','SECURE_SSL_REDIRECT','SESSION_COOKIE_SECURE','CSRF_COOKIE_SECURE',"
    "'SECURE_HSTS_SECONDS','SECURE_PROXY_SSL_HEADER']}))"
)


def _env(**extra: str) -> dict[str, str]:
    drop = ("DJANGO_ENV", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "SECURE_", "SESSION_COOKIE", "CSRF_COOKIE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(DJANGO_SETTINGS_MODULE="liveops.settings", **extra)
    return env


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(**env: str) -> dict:
    done = _manage("shell", "-c", PRINT, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


KEY = secrets.token_urlsafe(50)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOWED_HOSTS": "example.com"}, "SECRET_KEY must be set"),
        (
            {"ALLOWED_HOSTS": "example.com", "SECRET_KEY": "dev-only-insecure-key-change-me"},
            "SECRET_KEY must be set",
        ),
        ({"ALLOWED_HOSTS": "example.com", "SECRET_KEY": "short"}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": KEY}, "ALLOWED_HOSTS must list"),
        ({"SECRET_KEY": KEY, "ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS must list"),
    ],
)
def test_production_refuses_to_start_without_key_or_hosts(env, message):
    done = _manage("check", DJANGO_ENV="production", **env)
    assert done.returncode == EXIT_STATUS
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert KEY not in done.stderr


def test_production_check_deploy_is_clean_and_https_is_on():
    done = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        SECRET_KEY=KEY,
        ALLOWED_HOSTS="a.example",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    values = _settings(DJANGO_ENV="production", SECRET_KEY=KEY, ALLOWED_HOSTS="a.example,b.example")
    assert values == {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["a.example", "b.example"],
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    behind_proxy = _settings(
        DJANGO_ENV="production",
        SECRET_KEY=KEY,
        ALLOWED_HOSTS="a.example",
        SECURE_SSL_REDIRECT="0",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
    )
    assert behind_proxy["SECURE_SSL_REDIRECT"] is False
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_development_keeps_zero_setup_defaults():
    values = _settings()
    assert values["DEBUG"] is True and values["ALLOWED_HOSTS"] == ["*"]
    assert values["SECURE_SSL_REDIRECT"] is False and values["SESSION_COOKIE_SECURE"] is False


def test_debug_page_settings_hide_url_passwords():
    with override_settings(REDIS_URL="redis://:s3cret@cache:6379/0", BROKER_URL="redis://u:pw2@b:6379/1"):
        safe = RedactingExceptionReporterFilter().get_safe_settings()
    assert "s3cret" not in safe["REDIS_URL"] and safe["REDIS_URL"] == "redis://:***@cache:6379/0"
    assert "pw2" not in safe["BROKER_URL"]
    assert safe["SECRET_KEY"] != os.environ.get("SECRET_KEY", "dev-only-insecure-key-change-me")


@pytest.mark.django_db
def test_ssl_redirect_spares_the_health_probes():
    with override_settings(SECURE_SSL_REDIRECT=True):
        client = Client()
        assert client.get("/api/bosses/nope/state").status_code == 301
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "env",
    [
        {"DEBUG": "0"},
        {"DEBUG": "0", "SECRET_KEY": "dev-only-insecure-key-change-me", "ALLOWED_HOSTS": "example.com"},
        {"DEBUG": "0", "SECRET_KEY": KEY, "ALLOWED_HOSTS": ","},
    ],
)
def test_debug_off_refuses_the_development_key_or_no_hosts_in_any_environment(env):
    done = _manage("check", **env)
    assert done.returncode == EXIT_STATUS
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "DEBUG is off" in lines[0], done.stderr
    assert _manage("check", DEBUG="0", SECRET_KEY=KEY, ALLOWED_HOSTS="example.com").returncode == 0
