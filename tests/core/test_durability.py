"""core/durability.py: the durability settings, and the persistence check against real servers.

The servers are real ``redis-server`` / ``valkey-server`` processes of each test
(tests/support/redis_servers.py): one with the project's command line (AOF, fsync always),
one with the AOF off, one fsyncing every second, one with CONFIG renamed away (as managed
Redis services do), a primary with a replica. The replica wait itself is tested through the
services in tests/shards/test_replica_durability.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import config, durability
from core.config import ConfigError
from core.errors import AuthorityUnavailable
from tests.support.redis_servers import (
    RedisServer,
    redis_server_binary,
    start_replicated,
    valkey_server_binary,
)
from tools.stack import free_port

# --- the settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode"), [(None, "local"), ("", "local"), ("local", "local"), (" Replica ", "replica")]
)
def test_durability_mode_parses(raw, mode):
    assert durability.parse_durability_mode(raw) == mode


@pytest.mark.parametrize("raw", ["fast", "replicas", "aof", "1"])
def test_an_unknown_mode_names_the_variable_and_the_accepted_values(raw):
    with pytest.raises(ConfigError) as err:
        durability.parse_durability_mode(raw)
    assert str(err.value) == f"AUTHORITY_DURABILITY={raw!r}: expected one of local, replica"


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_replica_timeout_is_taken_exactly_inside_its_range_and_refused_outside(ms):
    inside = durability.MIN_REPLICA_TIMEOUT_MS <= ms <= durability.MAX_REPLICA_TIMEOUT_MS
    if inside:
        assert durability.parse_replica_timeout_ms(str(ms)) == ms
    else:
        with pytest.raises(ConfigError, match="AUTHORITY_REPLICA_TIMEOUT_MS"):
            durability.parse_replica_timeout_ms(str(ms))


@pytest.mark.parametrize("raw", ["0", "-5", "abc", "1.5", "2000"])
def test_a_bad_replica_timeout_says_what_it_accepts(raw):
    with pytest.raises(ConfigError) as err:
        durability.parse_replica_timeout_ms(raw)
    assert str(err.value).startswith(f"AUTHORITY_REPLICA_TIMEOUT_MS={raw!r}: ")
    assert "expected a duration from 1 ms to 1500 ms" in str(err.value)
    assert durability.parse_replica_timeout_ms(None) == durability.DEFAULT_REPLICA_TIMEOUT_MS


def test_the_registered_replica_timeout_bounds_are_the_ones_the_socket_timeout_allows():
    registered = config.lookup(durability.REPLICA_TIMEOUT_ENV)
    assert (registered.low, registered.high) == (
        durability.MIN_REPLICA_TIMEOUT_MS,
        durability.MAX_REPLICA_TIMEOUT_MS,
    )
    assert registered.default == str(durability.DEFAULT_REPLICA_TIMEOUT_MS)
    assert config.lookup(durability.MODE_ENV).choices == durability.MODES


def test_an_ack_durability_refuses_what_the_settings_would():
    assert not durability.AckDurability().waits_for_replica
    assert durability.AckDurability("replica", 50).waits_for_replica
    with pytest.raises(ConfigError):
        durability.AckDurability("everysec")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        durability.AckDurability("replica", 0)


def test_waitaof_waits_for_a_replica_first_and_stays_within_the_timeout():
    assert durability.wait_commands(timeout_ms=200, waitaof=False) == [("WAIT", 1, 200)]
    assert durability.wait_commands(timeout_ms=200, waitaof=True) == [
        ("WAIT", 1, 100),
        ("WAITAOF", 0, 1, 100),
    ]
    # never a 0 timeout (it would block forever)
    assert durability.wait_commands(timeout_ms=1, waitaof=True) == [("WAIT", 1, 1), ("WAITAOF", 0, 1, 1)]


# --- the persistence check, on real servers -------------------------------------------------


@pytest.fixture
def servers():
    """Start servers for one test (``servers(binary, *options)``); all stopped at its end."""
    started: list[RedisServer] = []

    def start(binary: str, *extra: str) -> RedisServer:
        server = RedisServer(binary, extra=extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.process
def test_the_projects_servers_persist_every_write(servers):
    server = servers(redis_server_binary())
    report = durability.probe_persistence(server.url())
    assert report.server.startswith("Redis 7.")
    assert (report.aof_enabled, report.fsync_policy, report.source) == (True, "always", "config")
    assert report.persists_every_write
    assert (report.role, report.connected_replicas) == ("master", 0)
    assert durability.persistence_problems(report, mode="local") == []
    # replica mode also needs a replica connected
    (problem,) = durability.persistence_problems(report, mode="replica")
    assert "0 replica(s) connected, 1 needed" in problem


@pytest.mark.process
def test_a_server_without_aof_or_with_everysec_is_reported(servers):
    binary = redis_server_binary()
    off = durability.probe_persistence(servers(binary, "--appendonly", "no").url())
    assert (off.aof_enabled, off.persists_every_write) == (False, False)
    (problem,) = durability.persistence_problems(off, mode="local")
    assert problem.startswith("appendonly is no")

    everysec = durability.probe_persistence(servers(binary, "--appendfsync", "everysec").url())
    assert (everysec.aof_enabled, everysec.fsync_policy) == (True, "everysec")
    (problem,) = durability.persistence_problems(everysec, mode="local")
    assert "appendfsync is everysec, not always" in problem


@pytest.mark.process
def test_a_server_that_refuses_config_is_read_from_info(servers):
    """Managed Redis often renames or forbids CONFIG: INFO still shows the AOF, not its fsync."""
    server = servers(redis_server_binary(), "--rename-command", "CONFIG", "")
    report = durability.probe_persistence(server.url())
    assert (report.source, report.aof_enabled, report.fsync_policy) == ("info", True, None)
    assert not report.persists_every_write
    (problem,) = durability.persistence_problems(report, mode="local")
    assert "appendfsync is unknown" in problem


@pytest.mark.process
def test_an_unreachable_server_is_one_clear_error():
    port = free_port()
    with pytest.raises(AuthorityUnavailable) as err:
        durability.probe_persistence(f"redis://:secret@127.0.0.1:{port}/3", timeout_s=0.5)
    message = str(err.value)
    assert f"the authority's Redis at redis://127.0.0.1:{port}/3 did not answer within 0.5 s" in message
    assert "secret" not in message  # the password is not logged


@pytest.mark.process
@pytest.mark.parametrize("kind", ["redis", "valkey"])
def test_a_primary_with_a_replica_and_its_waitaof(kind):
    binary = redis_server_binary() if kind == "redis" else valkey_server_binary()
    primary, replica = start_replicated(binary)
    try:
        report = durability.probe_persistence(primary.url())
        assert (report.role, report.connected_replicas) == ("master", 1)
        assert durability.persistence_problems(report, mode="replica") == []
        # Redis 7.0 has no WAITAOF (acks fall back to WAIT); Valkey 8.1 has it
        assert report.waitaof_supported is (kind == "valkey")
        on_replica = durability.probe_persistence(replica.url())
        assert on_replica.role == "slave"
        assert "not a primary" in durability.persistence_problems(on_replica, mode="replica")[0]
    finally:
        replica.stop()
        primary.stop()
