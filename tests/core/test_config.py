"""core/config.py: the typed readers refuse a bad value with one line (the variable, what it
got, what it accepts), the registry holds every variable the product reads, and nothing in
the product reads the environment around them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import config
from core.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
# The product's packages (tools/, examples/ and the tests live in a checkout only).
PRODUCT = ("core", "liveops", "transport", "api", "webhooks", "bosses", "shards", "audit")


def refused(reader, name: str, raw: str, **kwargs) -> str:
    """The one line ``reader`` refuses ``name=raw`` with."""
    with pytest.raises(ConfigError) as err:
        reader(name, env={name: raw}, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- the examples and the message's shape ----------------------------------------------


@pytest.mark.parametrize(
    ("reader", "name", "raw", "accepts"),
    [
        (config.read_duration_ms, "SYNC_TICK_INTERVAL_MS", "abc", "a duration from 1 ms to 1 min"),
        (config.read_duration_ms, "ARCHIVE_INTERVAL_MS", "1e9x", "a duration from 1 ms to 1 h"),
        (config.read_int, "MAX_SOCKETS_PER_ADDRESS", "many", "a whole number from 0 to 1000000"),
        (config.read_int, "TICK_PARTITIONS", "-3", "a whole number from 1 to 256"),
        (config.read_bool, "DEBUG", "maybe", "a boolean: 1, true, yes, on or 0, false, no, off"),
        (config.read_choice, "LOG_FORMAT", "xml", "one of text, json"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_what_it_got_and_what_it_accepts(
    reader, name, raw, accepts
):
    message = refused(reader, name, raw)
    assert message.startswith(f"{name}={raw!r}: ")
    assert f"expected {accepts}" in message


def test_unset_or_blank_is_the_registered_default():
    assert config.read_duration_ms("SYNC_TICK_INTERVAL_MS", env={}) == 100
    assert config.read_duration_ms("SYNC_TICK_INTERVAL_MS", env={"SYNC_TICK_INTERVAL_MS": "  "}) == 100
    assert config.read_int("MAX_PLAYERS_PER_BOSS", env={}) == 250_000
    assert config.read_choice("LOG_LEVEL", env={}) == "WARNING"
    assert config.read_bool("OPS_FEED_SHARED", env={}) is True
    assert config.read_url("REDIS_URL", env={}) == "redis://127.0.0.1:6379/0"


def test_a_default_that_depends_on_other_settings_is_passed_by_the_caller():
    assert config.read_bool("DEBUG", default=False, env={}) is False
    assert config.read_bool("DEBUG", default=False, env={"DEBUG": "yes"}) is True
    with pytest.raises(LookupError, match="the caller passes it"):
        config.read_bool("DEBUG", env={})


def test_only_registered_variables_can_be_read_and_only_as_their_kind():
    with pytest.raises(LookupError, match=r"not in core\.config\.REGISTRY"):
        config.read_int("NOT_A_VARIABLE", env={})
    with pytest.raises(LookupError, match="registered as duration"):
        config.read_int("SYNC_TICK_INTERVAL_MS", env={})
    with pytest.raises(LookupError, match="registered in s"):
        config.read_duration_ms("WEBHOOK_SECRET_GRACE_S", env={})


# --- the readers, kind by kind ---------------------------------------------------------------


@given(st.integers(min_value=-1_000, max_value=1_000))
def test_whole_numbers_are_taken_exactly_inside_their_bounds(n):
    env = {"TICK_PARTITIONS": f" {n} "}
    if 1 <= n <= 256:
        assert config.read_int("TICK_PARTITIONS", env=env) == n
    else:
        with pytest.raises(ConfigError, match="TICK_PARTITIONS"):
            config.read_int("TICK_PARTITIONS", env=env)


@pytest.mark.parametrize("raw", ["1.5", "1e3", "0x10", "ten", "5 5"])
def test_what_is_not_a_whole_number_is_refused(raw):
    assert "expected a whole number" in refused(config.read_int, "MAX_PLAYERS_PER_BOSS", raw)


def test_booleans_take_the_usual_words_in_any_case():
    for word in ("1", "true", "Yes", "ON"):
        assert config.read_bool("OPS_FEED_SHARED", env={"OPS_FEED_SHARED": word}) is True
    for word in ("0", "false", "No", "OFF"):
        assert config.read_bool("OPS_FEED_SHARED", env={"OPS_FEED_SHARED": word}) is False


def test_choices_ignore_case_and_give_the_registered_spelling():
    assert config.read_choice("LOG_LEVEL", env={"LOG_LEVEL": "info"}) == "INFO"
    assert config.read_choice("LOG_FORMAT", env={"LOG_FORMAT": " JSON "}) == "json"
    assert config.read_choice("REDIS_CLUSTER", env={"REDIS_CLUSTER": "yes"}) == "1"
    message = refused(config.read_choice, "REDIS_CLUSTER", "maybe")
    assert message == "REDIS_CLUSTER='maybe': expected one of 0, 1, auto"


@pytest.mark.parametrize(
    ("raw", "ms"),
    [("250", 250), ("250ms", 250), ("2s", 2_000), ("1.5s", 1_500), ("5m", 300_000), ("1h", 3_600_000)],
)
def test_durations_take_bare_numbers_in_their_unit_or_a_unit(raw, ms):
    assert config.read_duration_ms("ARCHIVE_INTERVAL_MS", env={"ARCHIVE_INTERVAL_MS": raw}) == ms


def test_durations_in_seconds():
    env = {"WEBHOOK_SECRET_GRACE_S": "1d"}
    assert config.read_duration_s("WEBHOOK_SECRET_GRACE_S", env=env) == 86_400
    assert config.read_duration_s("WEBHOOK_SECRET_GRACE_S", env={"WEBHOOK_SECRET_GRACE_S": "90"}) == 90
    assert "not a whole number of seconds" in refused(
        config.read_duration_s, "WEBHOOK_SECRET_GRACE_S", "1500ms"
    )


@pytest.mark.parametrize("raw", ["0", "2h", "-5", "1.5", "0.5ms", "1e9x", "5 minutes"])
def test_durations_outside_their_bounds_or_not_whole_are_refused(raw):
    message = refused(config.read_duration_ms, "ARCHIVE_INTERVAL_MS", raw)
    assert message.startswith(f"ARCHIVE_INTERVAL_MS={raw!r}: ")
    assert message.endswith(
        "expected a duration from 1 ms to 1 h: whole milliseconds, or a number with a unit (250ms, 2s, 5m, 1h, 1d)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@cache.example:6380/3",
        "redis://localhost",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_redis_urls_that_work(url):
    assert config.read_url("REDIS_URL", env={"REDIS_URL": url}) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", ""),
        ("http://127.0.0.1:6379/0", ""),
        ("redis://127.0.0.1:abc/0", "not a URL"),
        ("redis://127.0.0.1:6379/zero", "the database after the host must be a number, got 'zero'"),
        ("redis:///0", "names no host"),
    ],
)
def test_redis_urls_that_cannot_work(url, problem):
    message = refused(config.read_url, "REDIS_URL", url)
    assert message.startswith(f"REDIS_URL={url!r}: {problem}")
    assert message.endswith("expected a URL starting with redis://, rediss://, unix://")


def test_a_url_password_and_a_secret_are_never_echoed():
    message = refused(config.read_url, "BROKER_URL", "redis://:hunter2@broker:port/1")
    assert "hunter2" not in message and "redis://:***@broker:port/1" in message
    assert config.mask_password("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert config.mask_password("redis://h:1/0") == "redis://h:1/0"
    secret = config.lookup("SECRET_KEY")
    assert "s3cr3t" not in str(config.refuse(secret, "s3cr3t"))


def test_url_lists():
    env = {"CSRF_TRUSTED_ORIGINS": "https://ops.example.com, http://localhost:8000,"}
    assert config.read_url_list("CSRF_TRUSTED_ORIGINS", env=env) == [
        "https://ops.example.com",
        "http://localhost:8000",
    ]
    message = refused(config.read_url_list, "CSRF_TRUSTED_ORIGINS", "https://a.example,ops.example.com")
    assert "'ops.example.com': unknown scheme" in message
    assert message.endswith("expected a comma-separated list of URLs starting with http://, https://")


def test_lists_and_text():
    assert config.read_list("ALLOWED_HOSTS", default=["*"], env={}) == ["*"]
    assert config.read_list("ALLOWED_HOSTS", default=["*"], env={"ALLOWED_HOSTS": "a, b,,"}) == ["a", "b"]
    assert config.read_list("ALLOWED_HOSTS", default=["*"], env={"ALLOWED_HOSTS": ","}) == []
    assert config.read_str("SECURE_PROXY_SSL_HEADER", env={"SECURE_PROXY_SSL_HEADER": " HTTP_X "}) == "HTTP_X"
    assert config.read_str("METRICS_TOKEN", env={"METRICS_TOKEN": " tok "}) == " tok "  # a secret as given


# --- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", config.REGISTRY, ids=lambda s: s.name)
def test_every_registered_variable_is_documented_and_its_default_parses(setting):
    assert re.fullmatch(r"[A-Z][A-Z0-9_]+", setting.name)
    assert len(setting.meaning) > 15 and setting.accepts()
    if setting.default is None:
        assert setting.default_doc, "a computed default says how it is computed"
        return
    parse = {
        "int": config.parse_int,
        "bool": config.parse_bool,
        "choice": config.parse_choice,
        "duration": config.parse_duration,
        "url": config.parse_url,
        "url list": config.parse_url_list,
        "list": config.parse_list,
    }.get(setting.kind)
    if parse is not None and setting.default:
        parse(setting, setting.default)


def _product_sources() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def test_nothing_in_the_product_reads_the_environment_around_the_readers():
    reads = re.compile(r"os\.environ|getenv")
    allowed = re.compile(r'os\.environ\.setdefault\("DJANGO_SETTINGS_MODULE"')  # Django's own
    found = [
        f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}"
        for path in [*_product_sources(), ROOT / "manage.py"]
        if path != ROOT / "core" / "config.py"
        for lineno, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line) and not allowed.search(line)
    ]
    assert not found, "read these through core.config:\n" + "\n".join(found)


def test_every_registered_variable_is_read_by_the_product():
    text = "\n".join(p.read_text() for p in _product_sources() if p != ROOT / "core" / "config.py")
    unread = [s.name for s in config.REGISTRY if f'"{s.name}"' not in text]
    assert not unread, f"registered but never read: {unread}"


def test_the_markdown_table_has_a_row_per_variable():
    rows = config.markdown_table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [s.name for s in config.REGISTRY]
