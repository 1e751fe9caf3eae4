"""Settings, read from the environment with zero-setup defaults.

DATABASE_URL   default: sqlite file db.sqlite3 next to manage.py
REDIS_URL      authority (buffers, HP, event log)   default redis://127.0.0.1:6379/0
BROKER_URL     Celery broker                        default: REDIS_URL with db + 1 (required
               with Sentinel or Cluster)
CHANNELS_URL   only the bench's stock-Channels rows default: BROKER_URL with db + 1
REDIS_CLUSTER, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_DB,
REDIS_SENTINEL_PASSWORD, REDIS_SENTINEL_AUTH: the authority's topology (docs/topologies.md)
DJANGO_ENV     development (default) | production: production turns on
               AUTHORITY_REQUIRE_PERSISTENCE unless that variable says otherwise, turns DEBUG
               off by default, requires SECRET_KEY and ALLOWED_HOSTS and turns on the HTTPS
               settings of `check --deploy` (SECURE_SSL_REDIRECT, SESSION_COOKIE_SECURE,
               CSRF_COOKIE_SECURE, SECURE_HSTS_*; SECURE_PROXY_SSL_HEADER behind a TLS proxy)
PLAYER_TICKET_KEYS   kid:secret,... the game backends' ticket secrets (docs/security.md)
LIVEOPS_SIMULATOR_PLAYERS  1: free-form ?player= ids (demo, bench, tests); refused in production
MAX_PLAYERS_PER_BOSS distinct hosted player ids one boss accepts (default 250000)
AUTHORITY_DURABILITY, AUTHORITY_REPLICA_TIMEOUT_MS, AUTHORITY_REQUIRE_PERSISTENCE:
               what an ack waits for and whether to start on a Redis that does not
               persist every write (docs/durability.md)

Every variable is read through core.config's typed readers and is listed in its REGISTRY
(the README's configuration table). A value these settings cannot take raises
core.config.ConfigError with one line naming the variable, what it got and what it accepts;
every entry point (manage.py, uvicorn, Celery worker and beat) turns it into that one line on
stderr and exit status 2, before anything serves (liveops/startup.py, docs/deploy.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url

from core import config, durability
from core import redis as core_redis
from core.tickets import ticket_keys_parse
from liveops.logformat import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def redis_url_with_db_offset(url: str, offset: int) -> str:
    """Return ``url`` pointing at its db number plus ``offset`` (one Redis, separate dbs)."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit((parts.scheme, parts.netloc, f"/{db + offset}", parts.query, parts.fragment))


DJANGO_ENV = config.read_choice("DJANGO_ENV")
PRODUCTION = DJANGO_ENV == "production"

# --- Secrets, hosts, HTTPS (docs/deploy.md, "Production settings") -------------------------
# Development: zero setup (a public dev key, DEBUG on, any Host). Production: DEBUG off unless
# asked, and no default for the key or the hosts: a missing one refuses to start (one line).
DEV_SECRET_KEY = "dev-only-insecure-key-change-me"
SECRET_KEY = config.read_str("SECRET_KEY", default="" if PRODUCTION else DEV_SECRET_KEY)
if PRODUCTION and (not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise config.ConfigError(
        "SECRET_KEY must be set to a random string of at least 50 characters with DJANGO_ENV=production "
        "(not the development key), e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
DEBUG = config.read_bool("DEBUG", default=not PRODUCTION)
# Unset: "*" in development; "," is a list of no hosts (refused below when DEBUG is off).
ALLOWED_HOSTS = config.read_list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    raise config.ConfigError(
        "ALLOWED_HOSTS must list this deployment's host names (comma-separated, no '*') with DJANGO_ENV=production"
    )
# DEBUG off outside production is a server someone means to expose: the development key
# (public, in this repository) and no host list are refused there too.
if not DEBUG and not PRODUCTION and (SECRET_KEY == DEV_SECRET_KEY or not ALLOWED_HOSTS):
    raise config.ConfigError(
        "DEBUG is off: set SECRET_KEY to a random string (not the development key) and ALLOWED_HOSTS "
        "to this server's host names, or set DJANGO_ENV=production (docs/security.md)"
    )
CSRF_TRUSTED_ORIGINS = config.read_url_list("CSRF_TRUSTED_ORIGINS")
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto: SECURE_PROXY_SSL_HEADER=
# HTTP_X_FORWARDED_PROTO (only if the proxy always sets or strips that header).
if _proxy_header := config.read_str("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https")
# Production turns every HTTPS setting of `check --deploy` on; each can be turned off (e.g.
# SECURE_SSL_REDIRECT=0 where the proxy redirects, or on a plain-HTTP test rig).
SECURE_SSL_REDIRECT = config.read_bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancers probe over plain HTTP: health and metrics answer without the redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = config.read_bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = config.read_bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_HSTS_SECONDS = config.read_duration_s("SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.read_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = config.read_bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
# The debug page (development only) shows settings: hide the passwords inside *_URL values.
DEFAULT_EXCEPTION_REPORTER_FILTER = "transport.views.RedactingExceptionReporterFilter"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # the API's docs page (/api/v1/docs) then serves Swagger UI from these static files, not
    # from a CDN with an inline script (the Content-Security-Policy allows neither)
    "ninja",
    "audit",
    "shards",
    "bosses",
    "webhooks",
    "api",
]
# The demo, simulator, load generator and bench (tools/) live in a checkout, not in the
# product's distribution: their management commands exist outside production only.
if not PRODUCTION and importlib.util.find_spec("tools") is not None:
    INSTALLED_APPS.append("tools")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # a Content-Security-Policy on every response, the nonce of the pages' inline scripts
    "liveops.middleware.ContentSecurityPolicyMiddleware",
    # NUL and other text no database stores: 400 malformed before any view (core/text.py)
    "liveops.middleware.TextGuardMiddleware",
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

DATABASE_URL = config.read_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
except ValueError as exc:  # a scheme dj-database-url knows no engine for
    raise config.ConfigError(f"DATABASE_URL={config.mask_password(DATABASE_URL)!r}: {exc}") from None
if _test_db_name := config.read_str("TEST_DB_NAME"):  # parallel test runs on one machine need their own db
    DATABASES["default"].setdefault("TEST", {})["NAME"] = _test_db_name
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests run consumers and ORM on several threads: a file-based test db avoids
    # "table is locked" with the in-memory default (STACK-NOTES, Testing).
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(BASE_DIR / ".test-db.sqlite3")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes share the file in the demo and the tests (web, worker, beat). A
    # transaction that reads and then writes would fail at once with "database is locked"
    # when another process writes (SQLite cannot upgrade a read lock while waiting);
    # IMMEDIATE takes the write lock at BEGIN and waits up to the timeout instead. WAL lets
    # readers go on while one process writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;"
    )

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
REDIS_URL = config.read_url("REDIS_URL")
# One Redis (default), Sentinel (REDIS_SENTINELS + REDIS_SENTINEL_MASTER) or Redis Cluster
# (REDIS_CLUSTER=1|auto): docs/topologies.md. Parsed here without network; the servers are
# asked at start (core.redis.check_topology: `manage.py check`, the ASGI app, the worker).
REDIS_TOPOLOGY = core_redis.topology_from_env()
if REDIS_TOPOLOGY.kind == "cluster" and (problem := core_redis.cluster_url_problem(REDIS_URL)):
    raise config.ConfigError(f"REDIS_URL={config.mask_password(REDIS_URL)!r}: {problem}")
# Celery's broker: kombu has no Redis Cluster transport, and a db offset of a Sentinel
# master's address would not follow a failover, so those topologies need a broker of their
# own (a standalone Redis, or kombu's sentinel:// transport via BROKER_URL).
_broker_env = config.read_url("BROKER_URL", default="")
if REDIS_TOPOLOGY.kind in ("cluster", "sentinel") and not _broker_env:
    raise config.ConfigError(
        f"BROKER_URL is not set and the authority is a Redis {REDIS_TOPOLOGY.kind.title()}: "
        "Celery's broker cannot live there; set BROKER_URL to a standalone Redis (redis://host:6379/0)"
    )
BROKER_URL = _broker_env or redis_url_with_db_offset(REDIS_URL, 1)
# REDIS_CLUSTER=auto finds out only at start whether the default broker would be on a
# cluster (shards.checks refuses that).
BROKER_URL_DEFAULTED = not _broker_env
# Only the bench's stock-Channels comparison rows use a channel layer (tools/bench): the
# platform's fan-out is the hub (docs/fanout.md), so no CHANNEL_LAYERS is configured.
CHANNELS_URL = config.read_url("CHANNELS_URL", default=redis_url_with_db_offset(BROKER_URL, 1))

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
SYNC_TICK_INTERVAL_MS = config.read_duration_ms("SYNC_TICK_INTERVAL_MS")
# Tick tasks per interval, each over its share of the bosses' buckets (docs/sync-tick.md):
# raise it with the number of tick worker threads/processes to add tick capacity.
TICK_PARTITIONS = config.read_int("TICK_PARTITIONS")  # at most the 256 boss buckets
ARCHIVE_INTERVAL_MS = config.read_duration_ms("ARCHIVE_INTERVAL_MS")
CRASH_SCAN_INTERVAL_MS = config.read_duration_ms("CRASH_SCAN_INTERVAL_MS")
# Victory sagas: a running saga without progress for SAGA_STALE_MS is re-enqueued (its worker
# died); the sweep runs every SAGA_RESUME_INTERVAL_MS (bosses/sagas/victory.py, docs/sagas.md).
SAGA_STALE_MS = config.read_duration_ms("SAGA_STALE_MS")
SAGA_RESUME_INTERVAL_MS = config.read_duration_ms("SAGA_RESUME_INTERVAL_MS")

# Hosted players' rate limit shared by every ASGI process through the authority (rate.lua,
# bosses/hosted.py); off: per process only (one process, or sticky sessions per player).
HOSTED_SHARED_RATE_LIMIT = config.read_bool("HOSTED_SHARED_RATE_LIMIT")

# --- Durability of the authority (docs/durability.md) ---------------------------
# DJANGO_ENV (above) picks the defaults of a deployment: "production" refuses to start on an
# authority that does not fsync every write; "development" (the demo, the tests) only warns.
# local: an ack means the primary's AOF has it (appendfsync always); replica: a replica
# confirmed it too (WAITAOF, else WAIT) within AUTHORITY_REPLICA_TIMEOUT_MS.
AUTHORITY_DURABILITY = durability.parse_durability_mode(config.read_choice(durability.MODE_ENV))
AUTHORITY_REPLICA_TIMEOUT_MS = config.read_duration_ms(durability.REPLICA_TIMEOUT_ENV)
# The ASGI app and the Celery worker check the authority's persistence at start
# (liveops/startup.py): a warning, or with this on, a refusal to start.
AUTHORITY_REQUIRE_PERSISTENCE = config.read_bool(durability.REQUIRE_PERSISTENCE_ENV, default=PRODUCTION)

# LOG_FORMAT=json: one JSON object per line, with boss/shard/epoch fields; secrets redacted
# either way (liveops/logformat.py, docs/deploy.md).
LOG_FORMAT = config.read_choice("LOG_FORMAT")
LOGGING = logging_config(log_format=LOG_FORMAT, level=config.read_choice("LOG_LEVEL"))

# --- Operations: /metrics, /readyz (docs/deploy.md) ---------------------------------------
# Bearer token for /metrics; empty: only loopback and private (internal) addresses may scrape.
METRICS_TOKEN = config.read_str("METRICS_TOKEN")
# /readyz fails when the newest sync tick started longer ago than this (beat or worker down).
READY_TICK_MAX_AGE_MS = config.read_duration_ms("READY_TICK_MAX_AGE_MS")
# Operator dashboards: one shared poll per boss per ASGI process (0: one per socket, the
# previous behaviour, kept for the bench's comparison; transport/ops_feed.py).
OPS_FEED_SHARED = config.read_bool("OPS_FEED_SHARED")

# --- Bounds at the edge (docs/security.md) --------------------------------------------------
# WebSockets one client address may hold open on one ASGI process (players behind one NAT
# share an address: size it for the largest venue; 0 turns the cap off).
MAX_SOCKETS_PER_ADDRESS = config.read_int("MAX_SOCKETS_PER_ADDRESS")
# Half-open handshakes (transport/handshake.py reads these itself, in uvicorn's protocol
# before Django is loaded; read here too so a bad value stops every role at start).
HANDSHAKE_TIMEOUT_MS = config.read_duration_ms("HANDSHAKE_TIMEOUT_MS")
MAX_UNFINISHED_HANDSHAKES = config.read_int("MAX_UNFINISHED_HANDSHAKES")

# --- Player identity (docs/security.md, "Player identity") --------------------------------
# Secrets a game's backend signs player tickets with: "kid1:secret1,kid2:secret2" (several
# for rotation; each secret at least 32 bytes). Empty: no ticket is accepted.
try:
    PLAYER_TICKET_KEYS = ticket_keys_parse(config.read_str("PLAYER_TICKET_KEYS"))
except ValueError as exc:  # the message names the key id, never a secret
    raise config.ConfigError(f"PLAYER_TICKET_KEYS: {exc}") from None
# Simulator mode: any ?player=<id> is taken at its word (load generators, the demo, tests).
# Never in production: anyone could act as anyone.
SIMULATOR_PLAYER_IDS = config.read_bool("LIVEOPS_SIMULATOR_PLAYERS")
if PRODUCTION and SIMULATOR_PLAYER_IDS:
    raise config.ConfigError(
        "LIVEOPS_SIMULATOR_PLAYERS=1 lets any client claim any player id; it is refused with DJANGO_ENV=production"
    )
# Guests (bosses with allow_guests): an opaque server-issued id in a signed cookie, no session row.
GUEST_COOKIE_NAME = "liveops_guest"
GUEST_COOKIE_SALT = "liveops.guest"
GUEST_COOKIE_MAX_AGE_S = 30 * 24 * 3600
GUEST_COOKIE_SECURE = config.read_bool("GUEST_COOKIE_SECURE", default=PRODUCTION)
# Distinct player ids a boss accepts hosted attacks from (rate.lua); new ids past it are refused.
MAX_PLAYERS_PER_BOSS = config.read_int("MAX_PLAYERS_PER_BOSS")

# --- Webhooks (docs/webhooks.md) -------------------------------------------------------------
# Whether a webhook may be sent to a loopback, private or link-local address. Off in
# production: an endpoint URL must not make the platform POST into its own network.
WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = config.read_bool(
    "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS", default=not PRODUCTION
)
# Delivery, retries and the sweep (webhooks/conf.py; each a test may override).
WEBHOOK_MAX_ATTEMPTS = config.read_int("WEBHOOK_MAX_ATTEMPTS")
WEBHOOK_BACKOFF_BASE_MS = config.read_duration_ms("WEBHOOK_BACKOFF_BASE_MS")
WEBHOOK_BACKOFF_MAX_MS = config.read_duration_ms("WEBHOOK_BACKOFF_MAX_MS")
WEBHOOK_LEASE_MARGIN_MS = config.read_duration_ms("WEBHOOK_LEASE_MARGIN_MS")
WEBHOOK_SWEEP_INTERVAL_MS = config.read_duration_ms("WEBHOOK_SWEEP_INTERVAL_MS")
WEBHOOK_SWEEP_GRACE_MS = config.read_duration_ms("WEBHOOK_SWEEP_GRACE_MS")
WEBHOOK_SECRET_GRACE_S = config.read_duration_s("WEBHOOK_SECRET_GRACE_S")
