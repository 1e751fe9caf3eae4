"""Redis clients of the authority on one Redis, behind Sentinel, or on a Redis Cluster.

Django-free. One factory for every topology (docs/topologies.md):

* **standalone** (default): ``REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``);
* **Sentinel**: ``REDIS_SENTINELS=host:port,host:port,...`` and ``REDIS_SENTINEL_MASTER=<name>``
  (optional ``REDIS_SENTINEL_DB``, ``REDIS_SENTINEL_PASSWORD`` for the master and its
  replicas, ``REDIS_SENTINEL_AUTH`` for the sentinels themselves); ``REDIS_URL`` is not used
  for the authority then. redis-py's ``Sentinel`` asks the sentinels for the master before
  each new connection, so a failover is followed on the next call;
* **Cluster**: ``REDIS_CLUSTER=1`` with ``REDIS_URL`` naming any node (database 0 only), or
  ``REDIS_CLUSTER=auto`` to ask the node (``INFO cluster``) once per client. redis-py's
  ``RedisCluster`` follows MOVED/ASK and refreshes its slot map.

Each has a sync client (:func:`get_redis`, one per process) and an asyncio client
(:func:`get_async_redis`, one per event loop). Scripts and a WAIT can be pipelined on both
kinds (``core.authority``). The state fan-out (transport/hub.py) asks
:func:`pubsub_endpoints` where each channel's subscription belongs, and :func:`sharded_pubsub`
whether to use SSUBSCRIBE/SPUBLISH (on a cluster) or SUBSCRIBE/PUBLISH.

The URL and the topology come from providers that the project wiring installs at start
(``shards.apps.ShardsConfig.ready``); without them, from the environment. They are read when
a client is made, so tests that change the settings call :func:`reset_clients`. A
configuration that cannot work is refused with one line: :class:`TopologyConfigError` when
parsing (no network), :func:`check_topology` when the servers answer otherwise (a cluster
flag on a plain node, a master name no sentinel knows).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import config
from core.clients import AsyncClient, SyncClient
from core.config import ConfigError

# What "the authority is unreachable" looks like, whatever the topology: a refused or cut
# connection, a timeout, no master known to the sentinels (a ConnectionError subclass), a
# cluster that says its slots are down or a slot no node serves.
REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
)

# Fail fast instead of blocking a game loop when the authority is unreachable.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0

# --- configuration -------------------------------------------------------------------------

CLUSTER_ENV = "REDIS_CLUSTER"
SENTINELS_ENV = "REDIS_SENTINELS"
SENTINEL_MASTER_ENV = "REDIS_SENTINEL_MASTER"
SENTINEL_DB_ENV = "REDIS_SENTINEL_DB"
SENTINEL_PASSWORD_ENV = "REDIS_SENTINEL_PASSWORD"
SENTINEL_AUTH_ENV = "REDIS_SENTINEL_AUTH"

Kind = Literal["standalone", "sentinel", "cluster"]


class TopologyConfigError(ConfigError):
    """A Redis topology setting that cannot work; the message is one line naming the variable."""


@dataclass(frozen=True)
class Topology:
    """How the authority's Redis is deployed (the URL itself comes from the URL provider).

    ``kind`` is ``standalone``, ``sentinel``, ``cluster`` or ``auto`` (cluster when the
    node says so, asked once per client).
    """

    kind: Kind | Literal["auto"] = "standalone"
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    password: str | None = None
    sentinel_password: str | None = None

    def describe(self) -> str:
        """One line for logs and errors (no passwords)."""
        if self.kind == "sentinel":
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"Sentinel master {self.master!r} via {where}, db {self.db}"
        return self.kind


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` -> ``(("host", port), ...)``; one-line error on anything else."""
    out: list[tuple[str, int]] = []
    for item in raw.split(","):
        entry = item.strip()
        host, sep, port = entry.rpartition(":")
        host = host.strip("[]")
        if not entry or not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise TopologyConfigError(
                f"{SENTINELS_ENV}={raw!r}: {entry!r} is not host:port "
                "(expected a comma-separated list such as 10.0.0.1:26379,10.0.0.2:26379)"
            )
        out.append((host, int(port)))
    return tuple(out)


def topology_from_env(env: Mapping[str, str] | None = None) -> Topology:
    """The topology ``env`` (default: this process's environment) describes, without network;
    a :class:`~core.config.ConfigError` (a :class:`TopologyConfigError` for contradictions)
    when a variable is malformed or they contradict each other."""
    cluster = config.read_choice(CLUSTER_ENV, env=env)  # "0", "1" or "auto"
    sentinels_raw = config.read_str(SENTINELS_ENV, env=env)
    master = config.read_str(SENTINEL_MASTER_ENV, env=env)
    if sentinels_raw or master:
        if cluster != "0":
            raise TopologyConfigError(
                f"{SENTINELS_ENV} and {CLUSTER_ENV}={cluster} are both set: Sentinel and Redis "
                "Cluster are two different deployments, choose one"
            )
        if not sentinels_raw:
            raise TopologyConfigError(f"{SENTINEL_MASTER_ENV} is set but {SENTINELS_ENV} is empty")
        if not master:
            raise TopologyConfigError(
                f"{SENTINELS_ENV} is set but {SENTINEL_MASTER_ENV} is empty (the master's name, "
                "as in the sentinels' 'sentinel monitor <name> ...')"
            )
        return Topology(
            "sentinel",
            parse_sentinels(sentinels_raw),
            master,
            config.read_int(SENTINEL_DB_ENV, env=env),
            config.read_str(SENTINEL_PASSWORD_ENV, env=env) or None,
            config.read_str(SENTINEL_AUTH_ENV, env=env) or None,
        )
    if cluster == "1":
        return Topology("cluster")
    if cluster == "auto":
        return Topology("auto")
    return Topology("standalone")


def cluster_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a Redis Cluster node (one line), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return f"a Redis Cluster is reached over TCP (redis:// or rediss://), not {parts.scheme}://"
    db = parts.path.lstrip("/")
    if db and db != "0":
        return (
            f"REDIS_URL names database {db}, but a Redis Cluster has only database 0: "
            "drop the /<db> from REDIS_URL"
        )
    return None


_url_provider: Callable[[], str] = lambda: config.read_url("REDIS_URL")
_topology_provider: Callable[[], Topology] = topology_from_env
_resolved_kind: Kind | None = None
_sync_client: SyncClient | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_async_sentinels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiosentinel.Sentinel] = (
    weakref.WeakKeyDictionary()
)


def configure(
    *, url_provider: Callable[[], str], topology_provider: Callable[[], Topology] | None = None
) -> None:
    """Take the authority's URL (and topology) from these providers from now on (forgets
    cached clients)."""
    global _url_provider, _topology_provider
    _url_provider = url_provider
    if topology_provider is not None:
        _topology_provider = topology_provider
    reset_clients()


def authority_url() -> str:
    """The URL of the authority's Redis (a seed node on a cluster; unused with Sentinel)."""
    return _url_provider()


def topology() -> Topology:
    """The configured topology (``kind`` may be ``auto``; see :func:`topology_kind`)."""
    return _topology_provider()


def _ask_cluster_enabled(url: str, timeout_s: float) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        info = client.info("cluster")
        return str(info.get("cluster_enabled", "0")) == "1"
    finally:
        client.close()


def topology_kind() -> Kind:
    """``standalone``, ``sentinel`` or ``cluster``; ``auto`` asks the node once (cached until
    :func:`reset_clients`; raises a :data:`REDIS_DOWN` error when it does not answer)."""
    global _resolved_kind
    if _resolved_kind is None:
        kind = topology().kind
        if kind == "auto":
            kind = "cluster" if _ask_cluster_enabled(authority_url(), CONNECT_TIMEOUT_S) else "standalone"
        _resolved_kind = kind
    return _resolved_kind


def sharded_pubsub() -> bool:
    """Whether state messages use sharded pub/sub (SPUBLISH/SSUBSCRIBE): on a cluster only,
    where plain PUBLISH is broadcast to every node over the cluster bus (docs/topologies.md)."""
    return topology_kind() == "cluster"


def _cluster_url() -> str:
    url = authority_url()
    if problem := cluster_url_problem(url):
        raise TopologyConfigError(problem)
    return url


def get_redis() -> SyncClient:
    """The process-wide sync client of the authority."""
    global _sync_client
    if _sync_client is None:
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "health_check_interval": 30,
        }
        kind = topology_kind()
        if kind == "cluster":
            try:
                # No retry loop: redis-py's default backs off for seconds and re-reads the
                # slot map before each attempt, so every periodic task touching a dead
                # master's slots would hold a worker process that long and the sync-tick
                # tasks queued behind them would expire unrun, stopping the healthy masters'
                # bosses too. Callers retry on their own schedule (the next tick, the task's
                # retry); a failover's new map is read once, on the first error.
                _sync_client = redis.cluster.RedisCluster.from_url(
                    _cluster_url(), require_full_coverage=False, retry=Retry(NoBackoff(), 0), **common
                )
            except redis.exceptions.RedisClusterException as exc:
                # Raised by the first slot-map read when no seed node answers.
                raise redis.exceptions.ConnectionError(f"Redis Cluster unreachable: {exc}") from None
        elif kind == "sentinel":
            topo = topology()
            sentinel = redis.sentinel.Sentinel(
                list(topo.sentinels),
                sentinel_kwargs=_sentinel_kwargs(topo),
                socket_timeout=SOCKET_TIMEOUT_S,
            )
            _sync_client = sentinel.master_for(topo.master, db=topo.db, password=topo.password, **common)
        else:
            _sync_client = redis.Redis.from_url(authority_url(), **common)
    return _sync_client


def _sentinel_kwargs(topo: Topology) -> dict[str, object]:
    return {
        "socket_timeout": CONNECT_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "password": topo.sentinel_password,
        "decode_responses": True,
    }


def get_async_redis() -> AsyncClient:
    """The asyncio client of the authority for the running event loop."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # redis.asyncio retries 10 times by default (each attempt up to the socket
        # timeout): a paused Redis would hold a caller for ~30 s. Callers here retry on
        # their own schedule (the same seq next tick), so fail once, fast.
        kind = topology_kind()
        if kind == "cluster":
            client = aiocluster.RedisCluster.from_url(
                _cluster_url(),
                decode_responses=True,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                require_full_coverage=False,
            )
        elif kind == "sentinel":
            topo = topology()
            client = _async_sentinel(loop, topo).master_for(
                topo.master,
                db=topo.db,
                password=topo.password,
                decode_responses=True,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=AsyncRetry(NoBackoff(), 0),
            )
        else:
            client = aioredis.Redis.from_url(
                authority_url(),
                decode_responses=True,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=AsyncRetry(NoBackoff(), 0),
            )
        _async_clients[loop] = client
    return client


def _async_sentinel(loop: asyncio.AbstractEventLoop, topo: Topology) -> aiosentinel.Sentinel:
    sentinel = _async_sentinels.get(loop)
    if sentinel is None:
        sentinel = aiosentinel.Sentinel(
            list(topo.sentinels), sentinel_kwargs=_sentinel_kwargs(topo), socket_timeout=SOCKET_TIMEOUT_S
        )
        _async_sentinels[loop] = sentinel
    return sentinel


def reset_clients() -> None:
    """Forget cached clients and the detected topology (after a fork, or when tests change
    ``REDIS_URL``)."""
    global _sync_client, _resolved_kind
    _sync_client = None
    _resolved_kind = None
    _async_clients.clear()
    _async_sentinels.clear()


# --- where a subscription goes (the fan-out hub) -------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A server the hub opens a subscriber connection to."""

    host: str
    port: int
    path: str | None = None  # a unix socket instead of host:port
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def name(self) -> str:
        """``host:port`` (or the socket path), for logs."""
        return self.path or f"{self.host}:{self.port}"


def url_endpoint(url: str, *, host: str | None = None, port: int | None = None) -> Endpoint:
    """The server of a Redis URL (or ``host``/``port`` with the URL's credentials and TLS)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return Endpoint("", 0, path=parts.path)
    return Endpoint(
        host or parts.hostname or "127.0.0.1",
        port or parts.port or 6379,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


async def pubsub_endpoints(channels: Sequence[str], *, refresh: bool = False) -> dict[str, Endpoint]:
    """Where each channel's subscription belongs now: the server (standalone), the current
    master (asked of the sentinels), or the master that owns the channel's slot (the
    cluster's slot map, re-read from the cluster first when ``refresh``).

    Raises a :data:`REDIS_DOWN` error when the sentinels or every cluster node are away.
    """
    kind = await asyncio.to_thread(topology_kind) if _resolved_kind is None else _resolved_kind
    if kind == "sentinel":
        topo = topology()
        sentinel = _async_sentinel(asyncio.get_running_loop(), topo)
        host, port = await sentinel.discover_master(topo.master)
        master = Endpoint(str(host), int(port), password=topo.password)
        return dict.fromkeys(channels, master)
    if kind == "standalone":
        endpoint = url_endpoint(authority_url())
        return dict.fromkeys(channels, endpoint)
    client = get_async_redis()
    assert isinstance(client, aiocluster.RedisCluster)
    try:
        if refresh:
            await client.nodes_manager.initialize()
        else:
            await client.initialize()
    except redis.exceptions.RedisClusterException as exc:
        raise redis.exceptions.ConnectionError(f"Redis Cluster unreachable: {exc}") from None
    seed = authority_url()
    out: dict[str, Endpoint] = {}
    for channel in channels:
        node = client.get_node_from_key(channel)
        if node is None:
            raise redis.exceptions.SlotNotCoveredError(f"no node serves the slot of {channel!r}")
        out[channel] = url_endpoint(seed, host=node.host, port=int(node.port))
    return out


# --- the startup check ----------------------------------------------------------------------


def check_topology(*, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Ask the servers whether the configured topology matches them; one line on a mismatch.

    Refuses what can never work: ``REDIS_CLUSTER=1`` on a node that is not in cluster mode,
    a cluster node used as a plain Redis (every other key would answer MOVED mid-fight), a
    cluster URL with a database number, a master name none of the sentinels monitors.
    Servers that do not answer are not a configuration error (None): the calls fail with
    ``authority_unavailable`` until they do.
    """
    topo = topology()
    url = authority_url()
    if topo.kind == "sentinel":
        return _check_sentinel(topo, timeout_s)
    try:
        enabled = _ask_cluster_enabled(url, timeout_s)
    except redis.exceptions.RedisError:
        return None
    where = url_endpoint(url).name
    if topo.kind == "cluster" and not enabled:
        return (
            f"{CLUSTER_ENV}=1 but the Redis at {where} is not a cluster node (INFO cluster: "
            f"cluster_enabled:0); unset {CLUSTER_ENV} or point REDIS_URL at a cluster node"
        )
    if topo.kind == "standalone" and enabled:
        return (
            f"the Redis at {where} is a Redis Cluster node: set {CLUSTER_ENV}=1 (or auto), or every "
            "boss whose slot lives on another node would fail with MOVED"
        )
    if enabled:
        return cluster_url_problem(url)
    return None


def _check_sentinel(topo: Topology, timeout_s: float) -> str | None:
    known: set[str] = set()
    answered = 0
    for host, port in topo.sentinels:
        client = redis.Redis(
            host=host,
            port=port,
            password=topo.sentinel_password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        try:
            masters = client.sentinel_masters()
        except redis.exceptions.RedisError:
            continue
        finally:
            client.close()
        answered += 1
        if topo.master in masters:
            return None
        known.update(str(name) for name in masters)
    if answered == 0:
        return None
    where = ",".join(f"{h}:{p}" for h, p in topo.sentinels)
    return (
        f"{SENTINEL_MASTER_ENV}={topo.master!r} is not monitored by the sentinels at {where} "
        f"(they monitor: {', '.join(sorted(known)) or 'nothing'})"
    )
