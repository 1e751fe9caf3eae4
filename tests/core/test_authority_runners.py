"""The two colours of runner over one call builder: the sync runners (Celery tasks, the admin,
commands) and the async ones (the sockets) send the same EVALSHA words, read the reply with
the same parser, and load a script the server lost (SCRIPT FLUSH) from the same source, on one
Redis and on a Redis Cluster (every master)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis
import redis.cluster
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from core import authority
from core.redis import get_async_redis, get_redis
from tests.core.test_keys import cluster_node  # noqa: F401  (a one-node Redis Cluster)

SYNC_BOSS, ASYNC_BOSS = 11, 12
# An archive snapshot (restore.lua): the state and the ledgers of a boss.
_SNAPSHOT = json.dumps(
    {"state": {"version": "7", "hp": "3", "gen": "1"}, "seq": {}, "settled": {}, "floor": {}}
    | {"contrib": {}, "players": {}, "buf": {}, "first": []}
)


def _fight(boss_id: int) -> list[authority.Call[object]]:
    """One call of every script, in an order in which each one has something to do."""
    return [
        authority.seed_call(
            boss_id=boss_id,
            max_hp=1_000,
            phases=[(500, "Enraged")],
            opening="Calm",
            fight=1,
            slug="runners",
            min_tick_ms=0,
            floors={},
        ),
        authority.ingest_call(
            boss_id=boss_id, shard_key="eu-1", epoch=1, seq=1, amount=600, breakdown={"alice": 600}
        ),
        authority.ingest_call(boss_id=boss_id, shard_key="eu-1", epoch=1, seq=1, amount=600),
        authority.ingest_call(boss_id=boss_id, shard_key="eu-1", epoch=1, seq=5, amount=1),
        authority.heartbeat_call(boss_id=boss_id, shard_key="eu-2", epoch=1, pending=40),
        authority.fence_call(boss_id=boss_id, shard_key="eu-2", epoch=1, policy="fair"),
        authority.tick_call(boss_id=boss_id, force=True),
        authority.transition_call(boss_id=boss_id, to="paused", allowed_from=("live",)),
        authority.rate_call(boss_id=boss_id, players=["alice", "guest:x"], attacks_per_second=5),
        authority.restore_call(boss_id=boss_id, incarnation="", gen=1, snapshot=_SNAPSHOT),
    ]


def _comparable(outcome: object) -> object:
    # A tick stamps its own clock: the one field that may differ between two runs.
    if isinstance(outcome, authority.TickOutcome):
        return dataclasses.replace(outcome, ts_ms=0)
    return outcome


async def test_sync_and_async_runners_give_the_same_outcome_for_the_same_call():
    sync_client, async_client = get_redis(), get_async_redis()
    sync_outcomes = [_comparable(authority.run(sync_client, call)) for call in _fight(SYNC_BOSS)]
    async_outcomes = [_comparable(await authority.arun(async_client, call)) for call in _fight(ASYNC_BOSS)]
    assert sync_outcomes == async_outcomes
    codes = [getattr(out, "code", out) for out in sync_outcomes]
    assert codes == ["ok", "ok", "dup", "gap", "ok", "fenced", "applied", "ok", [0, 0], "restored"]
    ticked = sync_outcomes[6]
    assert isinstance(ticked, authority.TickOutcome)
    assert (ticked.hp, ticked.phase_name, ticked.applied) == (360, "Enraged", 640)


def test_a_call_names_its_script_by_the_sha1_redis_gives_its_source():
    call = authority.tick_call(boss_id=SYNC_BOSS)
    words = call.command()
    assert words[0] == "EVALSHA"
    assert words[1] == get_redis().script_load(call.source)
    assert words[2:] == (len(call.keys), *call.keys, *call.args)


def test_the_sync_runners_load_a_flushed_script_and_run_the_call_once():
    r = get_redis()
    seed, *_ = _fight(SYNC_BOSS)
    assert authority.run(r, seed).code == "ok"
    r.script_flush()
    out = authority.run(
        r, authority.ingest_call(boss_id=SYNC_BOSS, shard_key="eu-1", epoch=1, seq=1, amount=7)
    )
    assert out.code == "ok"
    assert r.script_exists(
        authority.ingest_call(boss_id=0, shard_key="x", epoch=1, seq=1, amount=1).command()[1]
    )

    r.script_flush()
    outcomes = authority.run_many(
        r,
        [
            authority.ingest_call(boss_id=SYNC_BOSS, shard_key="eu-1", epoch=1, seq=2, amount=3),
            authority.tick_call(boss_id=SYNC_BOSS, force=True),
        ],
    )
    assert [getattr(out, "code", out) for out in outcomes] == ["ok", "applied"]
    assert outcomes[1].applied == 10  # type: ignore[union-attr]  # each delta counted once


async def test_the_async_runners_load_a_flushed_script_and_run_the_call_once():
    r, client = get_redis(), get_async_redis()
    seed, *_ = _fight(ASYNC_BOSS)
    assert (await authority.arun(client, seed)).code == "ok"
    r.script_flush()
    ingest = authority.ingest_call(boss_id=ASYNC_BOSS, shard_key="eu-1", epoch=1, seq=1, amount=7)
    assert (await authority.arun(client, ingest)).code == "ok"
    assert r.script_exists(ingest.command()[1]) == [True]

    r.script_flush()
    out, replies = await authority.arun_then(
        client,
        authority.ingest_call(boss_id=ASYNC_BOSS, shard_key="eu-1", epoch=1, seq=2, amount=3),
        [("WAIT", 0, 1)],
    )
    assert (out.code, replies) == ("ok", [0])
    ticked = await authority.arun(client, authority.tick_call(boss_id=ASYNC_BOSS, force=True))
    assert ticked.applied == 10  # each delta counted once


@pytest.mark.process
async def test_both_runners_load_a_flushed_script_on_a_cluster(cluster_node: redis.Redis) -> None:  # noqa: F811
    kwargs = cluster_node.connection_pool.connection_kwargs
    where = {"host": kwargs["host"], "port": kwargs["port"], "decode_responses": True}
    sync_cluster = redis.cluster.RedisCluster(**where)
    async_cluster = AsyncRedisCluster(**where)
    try:
        seed, ingest, *_ = _fight(SYNC_BOSS)
        assert authority.run(sync_cluster, seed).code == "ok"
        cluster_node.script_flush()
        assert authority.run(sync_cluster, ingest).code == "ok"
        cluster_node.script_flush()
        again = authority.ingest_call(boss_id=SYNC_BOSS, shard_key="eu-1", epoch=1, seq=2, amount=5)
        assert (await authority.arun(async_cluster, again)).code == "ok"
        ticked = authority.run(sync_cluster, authority.tick_call(boss_id=SYNC_BOSS, force=True))
        assert ticked.applied == 605
    finally:
        sync_cluster.close()
        await async_cluster.aclose()
