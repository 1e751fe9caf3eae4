"""Settings, read from the environment with zero-setup defaults.

DATABASE_URL   default: sqlite file db.sqlite3 next to manage.py
REDIS_URL      authority (buffers, HP, event log)   default redis://127.0.0.1:6379/0
BROKER_URL     Celery broker                        default: REDIS_URL with db + 1
CHANNELS_URL   channel layer / state fan-out        default: REDIS_URL with db + 2
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def redis_url_with_db_offset(url: str, offset: int) -> str:
    """Return ``url`` pointing at its db number plus ``offset`` (one Redis, separate dbs)."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit((parts.scheme, parts.netloc, f"/{db + offset}", parts.query, parts.fragment))


SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = _env_bool("DEBUG", True)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "shards",
    "bosses",
    "tools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "liveops.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "liveops.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
if os.environ.get("TEST_DB_NAME"):  # parallel test runs on one machine need their own db
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["TEST_DB_NAME"]
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests run consumers and ORM on several threads: a file-based test db avoids
    # "table is locked" with the in-memory default (STACK-NOTES, Testing).
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(BASE_DIR / ".test-db.sqlite3")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".staticfiles"
LOGIN_URL = "/admin/login/"

# --- Redis -----------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
BROKER_URL = os.environ.get("BROKER_URL") or redis_url_with_db_offset(REDIS_URL, 1)
CHANNELS_URL = os.environ.get("CHANNELS_URL") or redis_url_with_db_offset(REDIS_URL, 2)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [CHANNELS_URL]},
    }
}

# --- Celery ----------------------------------------------------------------
# Names are read by liveops/celery.py via config_from_object(namespace="CELERY").
CELERY_BROKER_URL = BROKER_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A 100 ms beat: the default scheduler wakes at most every this many seconds.
CELERY_BEAT_MAX_LOOP_INTERVAL = 0.05

# --- Platform defaults -----------------------------------------------------
SYNC_TICK_INTERVAL_MS = int(os.environ.get("SYNC_TICK_INTERVAL_MS", "100"))
ARCHIVE_INTERVAL_MS = int(os.environ.get("ARCHIVE_INTERVAL_MS", "2000"))
CRASH_SCAN_INTERVAL_MS = int(os.environ.get("CRASH_SCAN_INTERVAL_MS", "500"))
# Victory sagas: a running saga without progress for SAGA_STALE_MS is re-enqueued (its worker
# died); the sweep runs every SAGA_RESUME_INTERVAL_MS (bosses/sagas/victory.py, docs/sagas.md).
SAGA_STALE_MS = int(os.environ.get("SAGA_STALE_MS", "5000"))
SAGA_RESUME_INTERVAL_MS = int(os.environ.get("SAGA_RESUME_INTERVAL_MS", "2000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
