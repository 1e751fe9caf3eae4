"""Every environment variable the product reads, and the typed readers that read them.

Django-free. :data:`REGISTRY` declares each variable once: its kind, what it accepts, its
default and what it means. The readers (:func:`read_int`, :func:`read_bool`,
:func:`read_choice`, :func:`read_duration_ms`, :func:`read_duration_s`, :func:`read_url`,
:func:`read_url_list`, :func:`read_list`, :func:`read_str`) read a registered variable only,
take an unset or blank variable for its default, and refuse any other value they cannot take
with :class:`ConfigError`: one line naming the variable, what it got and what it accepts
(``SYNC_TICK_INTERVAL_MS='abc': expected a duration from 1 ms to 1 h ...``). Secrets are never
echoed, and a URL's password is masked.

The settings (liveops/settings.py) read every variable at import; each entry point (manage.py,
the ASGI app, the Celery app) turns a ConfigError into that line on stderr and exit status
:data:`EXIT_STATUS` (docs/deploy.md, "Configuration"). The README's configuration table is
:func:`markdown_table` (``python -m core.config``); tests/test_docs.py checks they agree.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

# What a process that refuses its configuration exits with (1 is the startup checks' refusal
# of an authority that does not persist: liveops/startup.py).
EXIT_STATUS = 2
# The start of the line on stderr (tests and operators grep for it).
ERROR_PREFIX = "liveops: configuration error"

Kind = Literal["int", "bool", "choice", "duration", "url", "url list", "list", "string", "secret"]
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# kombu's Redis transports (redis+socket: a unix socket; sentinel: kombu's own failover).
BROKER_SCHEMES = ("redis", "rediss", "sentinel", "redis+socket")
HTTP_SCHEMES = ("http", "https")
# Duration units, in milliseconds.
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")


class ConfigError(ValueError):
    """A variable with a value the product cannot take; the message is one line naming the
    variable, what it got and what it accepts."""


def exit_on_config_error(exc: Exception) -> NoReturn:
    """End the process with the error's one line on stderr and :data:`EXIT_STATUS`: no
    traceback (SystemExit passes through uvicorn's and Celery's loaders untouched)."""
    print(f"{ERROR_PREFIX}: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS)


@dataclass(frozen=True)
class Setting:
    """One environment variable: its kind and bounds, its default and its meaning.

    ``default`` is the raw text an unset variable stands for (parsed like a set one); None
    when the default depends on other variables (``default_doc`` says how, and the code
    passes it). ``unit`` is a duration's unit without a suffix (``ms`` or ``s``).
    """

    name: str
    kind: Kind
    meaning: str
    default: str | None = ""
    default_doc: str = ""
    low: int | None = None
    high: int | None = None
    unit: Literal["ms", "s"] = "ms"
    choices: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    schemes: tuple[str, ...] = ()
    accepts_doc: str = ""

    def accepts(self) -> str:  # noqa: PLR0911 - one answer per kind, read as a table
        """What the variable takes, in words (the error messages and the README say this)."""
        if self.accepts_doc:
            return self.accepts_doc
        if self.kind == "int":
            return f"a whole number from {self.low} to {self.high}"
        if self.kind == "bool":
            return f"a boolean: {', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "duration":
            low, high = _duration_words(self.low or 0, self.unit), _duration_words(self.high or 0, self.unit)
            return (
                f"a duration from {low} to {high}: whole {_UNIT_WORDS[self.unit]}, "
                f"or a number with a unit ({_UNIT_EXAMPLES[self.unit]})"
            )
        if self.kind in ("url", "url list"):
            schemes = ", ".join(f"{s}://" for s in self.schemes)
            what = "a URL" if self.kind == "url" else "a comma-separated list of URLs"
            return f"{what} starting with {schemes}"
        if self.kind == "list":
            return "a comma-separated list"
        if self.kind == "secret":
            return "text (a secret: an error never shows it)"
        return "any text"


_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds"}
_UNIT_EXAMPLES = {"ms": "250ms, 2s, 5m, 1h, 1d", "s": "90s, 5m, 1h, 1d"}


def _duration_words(value: int, unit: str) -> str:
    """``3600000`` ms -> ``1 h``: the largest unit that divides the value."""
    ms = value * _UNITS_MS[unit]
    if ms == 0:
        return f"0 {unit}"
    for suffix, word in (("d", "d"), ("h", "h"), ("m", "min"), ("s", "s")):
        if ms and ms % _UNITS_MS[suffix] == 0:
            return f"{ms // _UNITS_MS[suffix]} {word}"
    return f"{ms} ms"


# --- parsing one raw value ------------------------------------------------------------------


def _shown(setting: Setting, raw: str) -> str:
    """The value as an error may show it: never a secret, never a URL's password."""
    if setting.kind == "secret":
        return f"<{len(raw)} characters, not shown>"
    if setting.kind in ("url", "url list"):
        return ",".join(mask_password(part) for part in raw.split(","))
    return raw


def mask_password(url: str) -> str:
    """``redis://:pw@host/0`` -> ``redis://:***@host/0`` (other text unchanged)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def refuse(setting: Setting, raw: str, problem: str = "") -> ConfigError:
    """The one-line error for ``raw``: the variable, what it got, what is wrong and what it
    accepts."""
    why = f"{problem}; " if problem else ""
    return ConfigError(f"{setting.name}={_shown(setting, raw)!r}: {why}expected {setting.accepts()}")


def parse_int(setting: Setting, raw: str) -> int:
    """A whole number within the setting's bounds."""
    text = raw.strip().replace("_", "")
    if not re.fullmatch(r"[+-]?\d+", text):
        raise refuse(setting, raw)
    value = int(text)
    if (setting.low is not None and value < setting.low) or (
        setting.high is not None and value > setting.high
    ):
        raise refuse(setting, raw)
    return value


def parse_bool(setting: Setting, raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, in any case."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise refuse(setting, raw)


def parse_choice(setting: Setting, raw: str) -> str:
    """One of the setting's choices (in any case; an alias stands for its choice)."""
    word = raw.strip().lower()
    word = setting.aliases.get(word, word)
    for choice in setting.choices:
        if word == choice.lower():
            return choice
    raise refuse(setting, raw)


def parse_duration(setting: Setting, raw: str) -> int:
    """A duration in the setting's unit: a bare whole number in that unit, or a number with a
    unit (``250ms``, ``1.5s``, ``5m``, ``1h``, ``1d``) that comes to a whole number of it."""
    match = _DURATION_RE.match(raw.strip().lower())
    if not match:
        raise refuse(setting, raw)
    number, suffix = match.groups()
    if suffix is None and "." in number:
        raise refuse(setting, raw, "a bare number must be whole")
    scaled = float(number) * _UNITS_MS[suffix or setting.unit] / _UNITS_MS[setting.unit]
    if not math.isfinite(scaled) or scaled != int(scaled):
        raise refuse(setting, raw, f"not a whole number of {_UNIT_WORDS[setting.unit]}")
    value = int(scaled)
    if (setting.low is not None and value < setting.low) or (
        setting.high is not None and value > setting.high
    ):
        raise refuse(setting, raw)
    return value


# Schemes whose URL names a path (a socket, a file), not a host.
_PATH_SCHEMES = ("unix", "redis+socket", "sqlite")


def url_problem(url: str, schemes: tuple[str, ...]) -> str:
    """What is wrong with one URL for these schemes (empty when nothing is)."""
    parts = urlsplit(url)
    if "://" not in url or parts.scheme not in schemes:
        return "unknown scheme"
    if parts.scheme in _PATH_SCHEMES:
        return "" if parts.path or parts.netloc else "names no path"
    try:
        _ = parts.port  # a port that is not a number in range raises ValueError
    except ValueError as exc:
        return f"not a URL ({exc})"
    if not parts.hostname:
        return "names no host"
    db = parts.path.lstrip("/")
    if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
        return f"the database after the host must be a number, got {db!r}"
    return ""


def parse_url(setting: Setting, raw: str) -> str:
    """A URL with one of the setting's schemes (and a host, unless it names a path)."""
    url = raw.strip()
    problem = url_problem(url, setting.schemes)
    if problem:
        raise refuse(setting, raw, "" if problem == "unknown scheme" else problem)
    return url


def parse_url_list(setting: Setting, raw: str) -> list[str]:
    """Comma-separated URLs, each with one of the setting's schemes; blanks are skipped."""
    urls = [part.strip() for part in raw.split(",") if part.strip()]
    for url in urls:
        if problem := url_problem(url, setting.schemes):
            raise refuse(setting, raw, f"{mask_password(url)!r}: {problem}")
    return urls


def parse_list(_setting: Setting, raw: str) -> list[str]:
    """Comma-separated items, stripped; blanks are skipped."""
    return [part.strip() for part in raw.split(",") if part.strip()]


# --- reading a registered variable ----------------------------------------------------------


def lookup(name: str, *kinds: Kind) -> Setting:
    """The registered setting ``name``; a variable that is not in :data:`REGISTRY`, or read as
    another kind, is a mistake in the product (LookupError, not a ConfigError)."""
    setting = _BY_NAME.get(name)
    if setting is None:
        raise LookupError(f"{name} is not in core.config.REGISTRY: register it (README, docs/deploy.md)")
    if kinds and setting.kind not in kinds:
        raise LookupError(f"{name} is registered as {setting.kind}, read as {' or '.join(kinds)}")
    return setting


def raw_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable's text, or None when it is unset or blank (the default applies)."""
    raw = (os.environ if env is None else env).get(name)
    return raw if raw is not None and raw.strip() else None


def _static_default(setting: Setting) -> str:
    """The registered default's text (parsed like a set value, so that it is checked too)."""
    if setting.default is None:
        raise LookupError(f"{setting.name}'s default depends on other settings: the caller passes it")
    return setting.default


def read_int(name: str, *, default: int | None = None, env: Mapping[str, str] | None = None) -> int:
    """A whole-number variable, within its registered bounds."""
    setting = lookup(name, "int")
    raw = raw_value(name, env)
    if raw is None and default is not None:
        return default
    return parse_int(setting, raw if raw is not None else _static_default(setting))


def read_bool(name: str, *, default: bool | None = None, env: Mapping[str, str] | None = None) -> bool:
    """A boolean variable."""
    setting = lookup(name, "bool")
    raw = raw_value(name, env)
    if raw is None and default is not None:
        return default
    return parse_bool(setting, raw if raw is not None else _static_default(setting))


def read_choice(name: str, *, default: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """One of the variable's registered choices."""
    setting = lookup(name, "choice")
    raw = raw_value(name, env)
    return parse_choice(setting, raw if raw is not None else default or _static_default(setting))


def _read_duration(name: str, unit: str, default: int | None, env: Mapping[str, str] | None) -> int:
    setting = lookup(name, "duration")
    if setting.unit != unit:
        raise LookupError(f"{name} is registered in {setting.unit}, read in {unit}")
    raw = raw_value(name, env)
    if raw is None and default is not None:
        return default
    return parse_duration(setting, raw if raw is not None else _static_default(setting))


def read_duration_ms(name: str, *, default: int | None = None, env: Mapping[str, str] | None = None) -> int:
    """A duration variable registered in milliseconds, as whole milliseconds."""
    return _read_duration(name, "ms", default, env)


def read_duration_s(name: str, *, default: int | None = None, env: Mapping[str, str] | None = None) -> int:
    """A duration variable registered in seconds, as whole seconds."""
    return _read_duration(name, "s", default, env)


def read_url(name: str, *, default: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """A URL variable with one of its registered schemes (a passed default is taken as is)."""
    setting = lookup(name, "url")
    raw = raw_value(name, env)
    if raw is None and default is not None:
        return default
    return parse_url(setting, raw if raw is not None else _static_default(setting))


def read_url_list(
    name: str, *, default: list[str] | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """A comma-separated list of URLs with the registered schemes."""
    setting = lookup(name, "url list")
    raw = raw_value(name, env)
    if raw is None and default is not None:
        return list(default)
    return parse_url_list(setting, raw if raw is not None else _static_default(setting))


def read_list(
    name: str, *, default: list[str] | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """A comma-separated list of items (stripped, blanks skipped)."""
    setting = lookup(name, "list")
    raw = raw_value(name, env)
    if raw is None and default is not None:
        return list(default)
    return parse_list(setting, raw if raw is not None else _static_default(setting))


def read_str(name: str, *, default: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """A text variable, stripped, or a secret, as it is (blank: the default)."""
    setting = lookup(name, "string", "secret")
    raw = raw_value(name, env)
    if raw is None:
        return default if default is not None else _static_default(setting)
    return raw if setting.kind == "secret" else raw.strip()


# --- the registry ---------------------------------------------------------------------------

_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_DAY_S = 86_400


def _ms(name: str, default: int, meaning: str, *, low: int = 1, high: int = _HOUR_MS) -> Setting:
    return Setting(name, "duration", meaning, default=str(default), low=low, high=high, unit="ms")


def _flag(name: str, meaning: str, *, default: str | None = None, default_doc: str = "") -> Setting:
    return Setting(name, "bool", meaning, default=default, default_doc=default_doc)


_PRODUCTION_ON = "on with DJANGO_ENV=production, else off"

REGISTRY: tuple[Setting, ...] = (
    # --- the deployment ---
    Setting(
        "DJANGO_ENV",
        "choice",
        "production: DEBUG off by default, SECRET_KEY and ALLOWED_HOSTS required, the HTTPS settings "
        "of check --deploy and AUTHORITY_REQUIRE_PERSISTENCE on (docs/deploy.md)",
        default="development",
        choices=("development", "production"),
    ),
    Setting(
        "SECRET_KEY",
        "secret",
        "Django's signing key; with DJANGO_ENV=production (or DEBUG off) a random string of at "
        "least 50 characters, not the development key (docs/security.md)",
        default=None,
        default_doc="a public development key (none in production)",
    ),
    _flag(
        "DEBUG",
        "Django's debug pages and static files under uvicorn",
        default_doc="on, off with DJANGO_ENV=production",
    ),
    Setting(
        "ALLOWED_HOSTS",
        "list",
        "the host names this deployment answers to; required (no *) with DJANGO_ENV=production",
        default=None,
        default_doc="* (none in production)",
    ),
    Setting(
        "CSRF_TRUSTED_ORIGINS",
        "url list",
        "origins whose form posts the admin accepts, e.g. https://ops.example.com (behind a proxy)",
        schemes=HTTP_SCHEMES,
    ),
    Setting(
        "SECURE_PROXY_SSL_HEADER",
        "string",
        "behind a TLS-terminating proxy: the header that says https, e.g. HTTP_X_FORWARDED_PROTO "
        "(only if the proxy always sets or strips it)",
    ),
    _flag(
        "SECURE_SSL_REDIRECT",
        "redirect plain HTTP to HTTPS (not /healthz, /readyz, /metrics)",
        default_doc=_PRODUCTION_ON,
    ),
    _flag("SESSION_COOKIE_SECURE", "the session cookie only over HTTPS", default_doc=_PRODUCTION_ON),
    _flag("CSRF_COOKIE_SECURE", "the CSRF cookie only over HTTPS", default_doc=_PRODUCTION_ON),
    Setting(
        "SECURE_HSTS_SECONDS",
        "duration",
        "Strict-Transport-Security max-age; 0 sends no header",
        default=None,
        default_doc="1 year with DJANGO_ENV=production, else 0",
        low=0,
        high=2 * 365 * _DAY_S,
        unit="s",
    ),
    _flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", "HSTS for the subdomains too", default_doc=_PRODUCTION_ON),
    _flag("SECURE_HSTS_PRELOAD", "HSTS preload flag", default_doc=_PRODUCTION_ON),
    _flag(
        "GUEST_COOKIE_SECURE",
        "the guest players' signed cookie only over HTTPS (docs/security.md)",
        default_doc=_PRODUCTION_ON,
    ),
    # --- databases and Redis ---
    Setting(
        "DATABASE_URL",
        "url",
        "the Django database; PostgreSQL: postgres://user@host:5432/db",
        default=None,
        default_doc="sqlite:///db.sqlite3 next to manage.py",
        schemes=("sqlite", "postgres", "postgresql", "pgsql"),
    ),
    Setting(
        "TEST_DB_NAME",
        "string",
        "test runs only: the name of the test database, so that parallel runs on one machine do not share one",
        default_doc="unset (.test-db.sqlite3 on SQLite)",
    ),
    Setting(
        "REDIS_URL",
        "url",
        "the authority (buffers, HP, event log) and the state pub/sub the fan-out hub subscribes to",
        default="redis://127.0.0.1:6379/0",
        schemes=REDIS_SCHEMES,
    ),
    Setting(
        "REDIS_CLUSTER",
        "choice",
        "1: REDIS_URL names a node of a Redis Cluster (db 0 only); auto: ask the node (docs/topologies.md)",
        default="0",
        choices=("0", "1", "auto"),
        aliases={"false": "0", "no": "0", "off": "0", "true": "1", "yes": "1", "on": "1"},
    ),
    Setting(
        "REDIS_SENTINELS",
        "string",
        "the authority behind Redis Sentinel: the sentinels' addresses (REDIS_URL is then not used "
        "for it; docs/topologies.md)",
        default_doc="unset",
        accepts_doc="host:port,host:port,...",
    ),
    Setting(
        "REDIS_SENTINEL_MASTER",
        "string",
        "with REDIS_SENTINELS: the master's name as the sentinels monitor it",
        default_doc="unset",
    ),
    Setting(
        "REDIS_SENTINEL_DB",
        "int",
        "with REDIS_SENTINELS: the database number on the master",
        default="0",
        low=0,
        high=2**31 - 1,
    ),
    Setting(
        "REDIS_SENTINEL_PASSWORD",
        "secret",
        "with REDIS_SENTINELS: the password of the master and its replicas",
        default_doc="unset",
    ),
    Setting(
        "REDIS_SENTINEL_AUTH",
        "secret",
        "with REDIS_SENTINELS: the password of the sentinels themselves",
        default_doc="unset",
    ),
    Setting(
        "BROKER_URL",
        "url",
        "the Celery broker; required (a standalone Redis, or kombu's sentinel://) when the authority is a "
        "Sentinel or Cluster deployment",
        default=None,
        default_doc="REDIS_URL with db + 1",
        schemes=BROKER_SCHEMES,
    ),
    Setting(
        "CHANNELS_URL",
        "url",
        "only the bench's stock-Channels comparison rows; the platform configures no channel layer (docs/fanout.md)",
        default=None,
        default_doc="BROKER_URL with db + 1",
        schemes=REDIS_SCHEMES,
    ),
    # --- the authority's durability (docs/durability.md) ---
    Setting(
        "AUTHORITY_DURABILITY",
        "choice",
        "what an ack waits for: local (the authority's AOF, appendfsync always) or replica (also a "
        "replica's WAITAOF / WAIT)",
        default="local",
        choices=("local", "replica"),
    ),
    Setting(
        "AUTHORITY_REPLICA_TIMEOUT_MS",
        "duration",
        "replica mode: the longest an ack waits for a replica, else authority_unavailable and the client "
        "re-sends (below the clients' 2 s socket timeout)",
        default="200",
        low=1,
        high=1_500,
    ),
    _flag(
        "AUTHORITY_REQUIRE_PERSISTENCE",
        "the ASGI app and the worker refuse to start when the authority does not fsync every write "
        "(otherwise a loud warning)",
        default_doc=_PRODUCTION_ON,
    ),
    # --- the sync loop and the sagas ---
    _ms("SYNC_TICK_INTERVAL_MS", 100, "the beat's sync tick (docs/sync-tick.md)", high=_MINUTE_MS),
    Setting(
        "TICK_PARTITIONS",
        "int",
        "tick tasks per interval, each over its share of the boss buckets: raise it with the number of "
        "tick worker threads/processes (docs/sync-tick.md)",
        default="1",
        low=1,
        high=256,
    ),
    _ms(
        "ARCHIVE_INTERVAL_MS",
        2_000,
        "event log -> SQL archive, and the check that restores an authority Redis lost or rolled back "
        "(docs/durability.md)",
    ),
    _ms("CRASH_SCAN_INTERVAL_MS", 500, "the crash-detection saga's scan of shard heartbeats (docs/sagas.md)"),
    _ms(
        "SAGA_STALE_MS",
        5_000,
        "a running saga without progress this long is re-enqueued (its worker died)",
        high=_DAY_MS,
    ),
    _ms("SAGA_RESUME_INTERVAL_MS", 2_000, "how often the sweep looks for stale sagas (docs/sagas.md)"),
    Setting(
        "LIVEOPS_FAILPOINTS",
        "list",
        "fault injection (tests): saga failpoints such as victory.rewards.inside at which the process "
        "exits like kill -9 (docs/faults.md); never in production",
        default_doc="none",
    ),
    # --- players and the edge (docs/security.md) ---
    Setting(
        "PLAYER_TICKET_KEYS",
        "secret",
        "the secrets a game backend signs player tickets with, several for rotation (docs/security.md)",
        default_doc="empty: no ticket is accepted",
        accepts_doc="kid:secret,... (each secret at least 32 bytes; an error never shows one)",
    ),
    _flag(
        "LIVEOPS_SIMULATOR_PLAYERS",
        "1: any ?player=<id> is taken at its word (the demo and the bench turn it on); refused in production",
        default="0",
    ),
    Setting(
        "MAX_PLAYERS_PER_BOSS",
        "int",
        "distinct hosted player ids a boss accepts attacks from; new ids past it are refused",
        default="250000",
        low=1,
        high=10_000_000,
    ),
    Setting(
        "MAX_SOCKETS_PER_ADDRESS",
        "int",
        "WebSockets one client address may hold open on one ASGI process (size it for the largest NAT); 0: no cap",
        default="4096",
        low=0,
        high=1_000_000,
    ),
    _ms(
        "HANDSHAKE_TIMEOUT_MS",
        10_000,
        "time a connection has to send a whole HTTP request head (a WebSocket upgrade included); "
        "then 408 and closed (transport/handshake.py)",
        low=100,
        high=600_000,
    ),
    Setting(
        "MAX_UNFINISHED_HANDSHAKES",
        "int",
        "connections one ASGI process holds that have not sent a whole request head yet; past it "
        "the oldest is closed (transport/handshake.py); 0: no cap",
        default="1000",
        low=0,
        high=1_000_000,
    ),
    _flag(
        "HOSTED_SHARED_RATE_LIMIT",
        "hosted players' rate limit shared by every ASGI process through the authority; off: per process",
        default="1",
    ),
    _flag(
        "OPS_FEED_SHARED",
        "operator dashboards share one poll per boss per process; off: one per socket (the bench's comparison)",
        default="1",
    ),
    # --- operations (docs/deploy.md) ---
    Setting(
        "LOG_FORMAT",
        "choice",
        "json: one JSON object per log line with boss/shard/epoch; secrets redacted either way",
        default="text",
        choices=("text", "json"),
    ),
    Setting(
        "LOG_LEVEL",
        "choice",
        "the root logger's level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    Setting(
        "METRICS_TOKEN",
        "secret",
        "bearer token for /metrics scrapers; without it: internal addresses only",
        default_doc="unset",
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "string",
        "a directory shared by the host's processes: /metrics adds them all up (set before start)",
        default_doc="unset: this process only",
    ),
    _ms(
        "READY_TICK_MAX_AGE_MS",
        5_000,
        "/readyz fails when the newest sync tick started longer ago (beat or worker down)",
    ),
    # --- webhooks (docs/webhooks.md) ---
    _flag(
        "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS",
        "whether webhooks may go to loopback, private or link-local addresses",
        default_doc="off with DJANGO_ENV=production, else on",
    ),
    Setting(
        "WEBHOOK_MAX_ATTEMPTS",
        "int",
        "attempts of one delivery before it is marked failed (the first one included)",
        default="12",
        low=1,
        high=1_000,
    ),
    _ms(
        "WEBHOOK_BACKOFF_BASE_MS",
        2_000,
        "wait before attempt n+1: half to all of min(BASE * 2^(n-1), MAX)",
        low=0,
        high=_DAY_MS,
    ),
    _ms("WEBHOOK_BACKOFF_MAX_MS", 900_000, "the longest wait between two attempts", low=0, high=_DAY_MS),
    _ms(
        "WEBHOOK_LEASE_MARGIN_MS",
        30_000,
        "an attempt holds its delivery for the endpoint's timeout plus this; past it, the sweep sends again",
        low=0,
    ),
    _ms(
        "WEBHOOK_SWEEP_INTERVAL_MS",
        10_000,
        "how often the beat's sweep re-enqueues overdue deliveries",
        high=_DAY_MS,
    ),
    _ms(
        "WEBHOOK_SWEEP_GRACE_MS",
        60_000,
        "how long past its next attempt a pending delivery is left alone",
        low=0,
        high=_DAY_MS,
    ),
    Setting(
        "WEBHOOK_SECRET_GRACE_S",
        "duration",
        "after a secret rotation the previous secret still signs (a second v1= value) this long",
        default="86400",
        low=0,
        high=365 * _DAY_S,
        unit="s",
    ),
)
_BY_NAME: dict[str, Setting] = {s.name: s for s in REGISTRY}
assert len(_BY_NAME) == len(REGISTRY), "a variable is registered twice"


# --- the README's table ---------------------------------------------------------------------


def _default_cell(setting: Setting) -> str:
    if setting.default_doc:
        return setting.default_doc
    if setting.default:
        return f"`{setting.default}`"
    return "empty"


def markdown_table() -> str:
    """The README's configuration table: one row per registered variable."""
    rows = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for s in REGISTRY:
        rows.append(f"| `{s.name}` | {_default_cell(s)} | {s.accepts()} | {s.meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
