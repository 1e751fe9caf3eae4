"""The SDK's fence handling when one game server feeds several bosses (live uvicorn, real Redis).

A crash saga fences one (boss, session). The SDK then moves the whole connection to a new
epoch: the other bosses' buffers must continue from seq 1 under it, and their abandoned old
sessions must not be left holding damage that a later crash saga would apply a second time.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from bosses.sagas.crash import session_fence
from bosses.services import boss_go_live, boss_pause, boss_resume, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from shards.services import shard_create
from tests.faults.conftest import start_server
from worldboss_sdk.client import ShardClient

pytestmark = [
    pytest.mark.process,
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]


@pytest.fixture
def server_url(transactional_db):
    proc, url = start_server()
    yield url
    proc.stop()


async def until(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not await sync_to_async(predicate)():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _held(boss, sess) -> int:
    return int(get_redis().hget(keys.BossKeys(boss.pk).held, sess) or 0)


async def test_fence_on_one_boss_keeps_the_others_exact(server_url, make_boss):
    a = await sync_to_async(make_boss)(
        crash_policy="fair", heartbeat_interval_ms=100, heartbeat_timeout_ms=1_000
    )
    b = await sync_to_async(make_boss)(crash_policy="fair", heartbeat_timeout_ms=600_000)
    for boss in (a, b):
        await sync_to_async(boss_go_live)(boss=boss)
    _, token = await sync_to_async(shard_create)(key="multi", name="multi-boss server")
    client = ShardClient(server_url, shard="multi", token=token, tick_ms=50, heartbeat_ms=100)
    await client.start()
    await client.wait_connected()
    old = client.epoch
    try:
        for boss in (a, b):
            client.hit(boss.slug, 100)
        assert await client.flush(10)
        # B is paused: its delta is refused and stays in flight, more hits wait behind it, and
        # its heartbeats report both as held on the old session.
        await sync_to_async(boss_pause)(boss=b)
        client.hit(b.slug, 60)
        await asyncio.sleep(0.2)
        client.hit(b.slug, 25)
        await until(lambda: _held(b, f"multi:{old}") == 85)
        # A's scan (1 s timeout) declares the session crashed; B's (10 min) has not.
        saga = await sync_to_async(session_fence)(boss=a, shard_key="multi", epoch=old)
        client.hit(a.slug, 10)
        await asyncio.sleep(0.3)
        await sync_to_async(boss_resume)(boss=b)  # B's in-flight delta lands on the old epoch
        assert await client.flush(10)
        assert client.epoch > old
        for boss in (a, b):  # both bosses now go out under the new epoch
            client.hit(boss.slug, 5)
        assert await client.flush(10), "a boss's damage is stuck after the epoch changed"
        # B's old session was left behind: it must hold nothing a later saga could re-apply.
        assert _held(b, f"multi:{old}") == 0
        late = await sync_to_async(session_fence)(boss=b, shard_key="multi", epoch=old)
        assert late.amount == 0
    finally:
        await client.stop(timeout_s=2)
    for boss in (a, b):
        await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
        report = await sync_to_async(boss_verify)(boss=boss)
        assert report.ok, report.problems
    applied = {boss.slug: (await sync_to_async(boss_verify)(boss=boss)).applied for boss in (a, b)}
    assert applied == {a.slug: 115, b.slug: 190}
    assert saga.amount == 0  # A held nothing unsent when it was fenced
