"""The client types of the authority, for annotations: one Redis, a Sentinel-managed master
(also a ``redis.Redis``), or a Redis Cluster (docs/topologies.md).

A module of its own, below ``core.redis`` and ``core.authority``, so that both can name the
union without importing each other (the core's layers, pyproject.toml), and the one
helper both need: :func:`execute_pipelined`, a pipeline that survives a dead cluster node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster

SyncClient: TypeAlias = redis.Redis | redis.cluster.RedisCluster
AsyncClient: TypeAlias = aioredis.Redis | aiocluster.RedisCluster

# A pipeline that could not reach its server: every command in it failed with this.
UNREACHABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
)
# One pipelined command: the key that routes it (its slot on a cluster) and its words.
Routed: TypeAlias = tuple[str, tuple[object, ...]]


def execute_pipelined(client: SyncClient, commands: Sequence[Routed]) -> list[object]:
    """Send ``commands`` pipelined; each reply, or the exception of that command.

    On one Redis (or a Sentinel master) it is one pipeline: an unreachable server fails
    every command with its connection error. On a cluster it is one pipeline per master:
    redis-py's cluster pipeline raises for the whole batch when any node is down, which
    would stop the bosses of the healthy masters too; grouped per node, a dead master fails
    only the commands of its slots, and MOVED/ASK are still followed inside each group.
    """
    if not commands:
        return []
    if not isinstance(client, redis.cluster.RedisCluster):
        return _send(client, list(commands))
    out: list[object] = [None] * len(commands)
    moved: list[int] = []
    stale = False
    for name, indexes in _group_by_node(client, commands).items():
        replies = _send_to_node(client, name, [commands[i] for i in indexes])
        if replies is None:
            moved += indexes
            continue
        if replies and isinstance(replies[0], UNREACHABLE):
            stale = True  # a dead master, or one replaced by a failover: re-read the slot map
        for i, reply in zip(indexes, replies, strict=True):
            if _is_redirect(reply):
                moved.append(i)
            else:
                out[i] = reply
    if moved or stale:
        try:
            client.nodes_manager.initialize()
        except redis.exceptions.RedisError:
            pass  # the cluster is unreachable: these commands fail with their own errors
    if moved:
        for i, reply in zip(moved, _send(client, [commands[i] for i in moved]), strict=True):
            out[i] = reply
    return out


def _group_by_node(client: redis.cluster.RedisCluster, commands: Sequence[Routed]) -> dict[str, list[int]]:
    """The indexes of ``commands`` per name of the node that serves their key's slot.

    A key whose slot no node serves (per the client's slot map) goes in the group ``""``.
    """
    groups: dict[str, list[int]] = {}
    for i, (key, _) in enumerate(commands):
        try:
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisClusterException:
            node = None
        groups.setdefault(node.name if node is not None else "", []).append(i)
    return groups


def _send_to_node(
    client: redis.cluster.RedisCluster, name: str, commands: list[Routed]
) -> list[object] | None:
    """``commands`` on the node ``name``'s own client; None when there is no such node.

    A plain pipeline costs no per-command slot work (the cluster pipeline's costs ~3x the
    pass on 2,000 bosses). A slot that moved meanwhile answers MOVED/ASK for its commands,
    which :func:`execute_pipelined` sends again through the cluster pipeline.
    """
    node = client.get_node(node_name=name) if name else None  # type: ignore[no-untyped-call]
    conn = node.redis_connection if node is not None else None
    return _send(conn, commands) if conn is not None else None


def _is_redirect(reply: object) -> bool:
    """Whether ``reply`` is a MOVED or ASK redirection (typed, or as a plain response error)."""
    return isinstance(reply, (redis.exceptions.MovedError, redis.exceptions.AskError)) or (
        isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith(("MOVED", "ASK"))
    )


def _send(client: SyncClient, commands: list[Routed]) -> list[object]:
    pipe = client.pipeline(transaction=False)
    for _, words in commands:
        pipe.execute_command(*words)
    try:
        replies: list[object] = pipe.execute(raise_on_error=False)
    except UNREACHABLE as exc:
        return [exc] * len(commands)
    return replies


def slot_client(client: SyncClient, key: str) -> redis.Redis:
    """A plain client of the server that holds ``key``: ``client`` itself on one Redis, the
    master of ``key``'s slot on a cluster.

    For MULTI/EXEC over keys of one slot: redis-py's cluster transactions leave some replies
    unparsed (XRANGE entries, SMEMBERS sets), so the transaction runs on the node's own
    client, with every reply parsed as on one Redis. A slot that moves in between fails
    that one call (MOVED), like any call during a resharding.
    """
    if not isinstance(client, redis.cluster.RedisCluster):
        return client
    node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    if node is None or node.redis_connection is None:
        raise redis.exceptions.SlotNotCoveredError(f"no node serves the slot of {key!r}")
    conn: redis.Redis = node.redis_connection
    return conn
