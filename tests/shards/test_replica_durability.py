"""``AUTHORITY_DURABILITY=replica``: an ack only once a replica has the write (docs/durability.md).

Each test starts a primary and a replica of its own (real servers, tests/support/redis_servers.py),
points this process's authority at the primary and ingests through the real services:

* an acked delta is on the replica at the moment of the ack (read from the replica itself);
* with the replica stopped (SIGSTOP) the ingest answers ``authority_unavailable`` within the
  timeout; the re-sent seq is refused too while the replica is stopped (a duplicate's ack is
  an ack: it waits as well, also on a new connection), and after SIGCONT it is acked as a
  duplicate and applied exactly once;
* the same on valkey-server 8.1, where the wait is WAITAOF (a replica fsynced it), and on
  Redis 7.0, where it is WAIT (a replica has it in memory).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bosses.services import boss_go_live, boss_tick
from core import keys
from core.errors import AuthorityUnavailable
from core.redis import reset_clients
from shards.services import adelta_ingest
from tests.support.authority import background_client, delta_ingest, heartbeat_record
from tests.support.redis_servers import (
    RedisServer,
    redis_server_binary,
    start_replicated,
    valkey_server_binary,
)

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TIMEOUT_MS = 300
# An ack refused for want of a replica comes after one replica wait (two for a duplicate:
# one after the script, one after the mark), plus scheduling slack on a busy 2-core box.
REFUSAL_BOUND_S = 2 * TIMEOUT_MS / 1000 + 1.0
DB = 10


@pytest.fixture(params=["redis", "valkey"])
def servers(request, settings):
    """A primary + replica (Redis 7.0: WAIT; Valkey 8.1: WAITAOF); the authority on the primary."""
    binary = redis_server_binary() if request.param == "redis" else valkey_server_binary()
    primary, replica = start_replicated(binary)
    settings.REDIS_URL = settings.BROKER_URL = settings.CHANNELS_URL = primary.url(DB)
    settings.AUTHORITY_DURABILITY = "replica"
    settings.AUTHORITY_REPLICA_TIMEOUT_MS = TIMEOUT_MS
    reset_clients()
    yield request.param, primary, replica
    replica.stop()
    primary.stop()
    reset_clients()


def _replica_seq(replica: RedisServer, boss_id: int, session) -> int:
    client = replica.client(DB)
    try:
        return int(
            client.hget(keys.BossKeys(boss_id).seq, keys.session_id(session.shard_key, session.epoch)) or 0
        )
    finally:
        client.close()


def _accepted(server: RedisServer, boss_id: int) -> int:
    client = server.client(DB)
    try:
        return int(client.hget(keys.BossKeys(boss_id).state, "accepted") or 0)
    finally:
        client.close()


def _ingest_acked(**delta):
    """What a client does: re-send the same seq until it is acknowledged (a healthy replica
    still misses a 300 ms wait now and then on a loaded 2-core machine)."""
    for _ in range(20):
        try:
            return delta_ingest(**delta)
        except AuthorityUnavailable:
            continue
    raise AssertionError("the replica never acknowledged the delta")


def test_an_ack_comes_only_once_the_replica_has_the_delta(servers, make_boss, make_session):
    kind, primary, replica = servers
    boss = make_boss(max_hp=1_000_000)
    boss_go_live(boss=boss)
    session = make_session("eu-1")
    for seq in range(1, 21):
        _ingest_acked(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=seq, amount=10)
        # read from the replica right after the ack: it already holds this seq
        assert _replica_seq(replica, boss.pk, session) == seq
    assert _accepted(replica, boss.pk) == 200

    async def async_ingests():
        for seq in range(21, 31):
            await adelta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=seq, amount=10)
            assert _replica_seq(replica, boss.pk, session) == seq

    asyncio.run(async_ingests())
    # the wait the server supports: WAITAOF on Valkey 8.1, WAIT on Redis 7.0 (asked once per
    # client, here the one the sync ingests above ran on)
    assert background_client()._liveops_waitaof is (kind == "valkey")


def test_a_stopped_replica_refuses_the_ack_and_the_resent_seq_lands_once(servers, make_boss, make_session):
    _, primary, replica = servers
    boss = make_boss(max_hp=1_000_000)
    boss_go_live(boss=boss)
    session = make_session("eu-1")
    _ingest_acked(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=1, amount=100)

    replica.pause()
    try:
        started = time.monotonic()
        with pytest.raises(AuthorityUnavailable, match="no replica"):
            delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=2, amount=250)
        assert time.monotonic() - started < REFUSAL_BOUND_S
        # the primary accepted it; only the ack was refused
        assert _accepted(primary, boss.pk) == 350
        # the re-sent seq is a duplicate on the primary, and its ack waits for the replica
        # too, also on a connection that wrote nothing before (WAIT counts per connection)
        for fresh_connection in (False, True):
            if fresh_connection:
                reset_clients()
            started = time.monotonic()
            with pytest.raises(AuthorityUnavailable):
                delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=2, amount=250)
            assert time.monotonic() - started < REFUSAL_BOUND_S
        # a heartbeat's reply carries last_seq (an acknowledgement): it waits as well
        with pytest.raises(AuthorityUnavailable):
            heartbeat_record(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, pending=0)
    finally:
        replica.resume()

    reset_clients()
    result = _ingest_acked(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=2, amount=250)
    assert result.duplicate
    assert _replica_seq(replica, boss.pk, session) == 2
    assert heartbeat_record(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, pending=0).last_seq == 2
    # applied exactly once, on both servers
    assert _accepted(primary, boss.pk) == _accepted(replica, boss.pk) == 350
    ticked = boss_tick(boss_id=boss.pk, force=True)
    assert (ticked.code, ticked.applied, ticked.hp) == ("applied", 350, 1_000_000 - 350)


def test_local_mode_does_not_wait_for_a_stopped_replica(servers, settings, make_boss, make_session):
    _, primary, replica = servers
    settings.AUTHORITY_DURABILITY = "local"
    boss = make_boss()
    boss_go_live(boss=boss)
    session = make_session("eu-1")
    replica.pause()
    try:
        started = time.monotonic()
        for seq in range(1, 6):
            delta_ingest(boss_id=boss.pk, shard_key="eu-1", epoch=session.epoch, seq=seq, amount=1)
        # five acks, no replica wait: far below one timeout
        assert time.monotonic() - started < TIMEOUT_MS / 1000
    finally:
        replica.resume()
    assert _accepted(primary, boss.pk) == 5
