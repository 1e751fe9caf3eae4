"""How durable an acknowledgement is: the authority's persistence, checked at start, and the
replica wait before an ack (docs/durability.md).

Django-free. Three parts:

* **configuration**: the durability settings, parsed by core.config's readers with their
  one-line errors (:func:`parse_durability_mode`, :func:`parse_replica_timeout_ms`);
* **the startup check**: :func:`probe_persistence` asks the authority's Redis whether it
  keeps an append-only file and fsyncs it on every write (``CONFIG GET``; ``INFO
  persistence`` when a managed Redis refuses CONFIG), how many replicas it has and whether
  it knows WAITAOF; :func:`persistence_problems` says what a mode needs and lacks;
* **the ack**: in ``replica`` mode, :func:`aingest_acknowledged` / :func:`aheartbeat_acknowledged`
  (the sockets' path; one body, async only) run the script and then the replica wait
  (:func:`wait_commands`: ``WAITAOF 0 1``, or ``WAIT 1`` on a server without WAITAOF) on the
  same connection, and raise :class:`~core.errors.AuthorityUnavailable` when no replica
  confirmed in time: the client re-sends the same seq, which the ingest script then acks as a
  duplicate (exactly once).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis

from core import authority, config
from core.clients import AsyncClient
from core.errors import AuthorityUnavailable
from core.redis import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S

# --- configuration ------------------------------------------------------------------------

MODE_ENV = "AUTHORITY_DURABILITY"
REPLICA_TIMEOUT_ENV = "AUTHORITY_REPLICA_TIMEOUT_MS"
REQUIRE_PERSISTENCE_ENV = "AUTHORITY_REQUIRE_PERSISTENCE"

DurabilityMode = Literal["local", "replica"]
MODES: tuple[DurabilityMode, ...] = ("local", "replica")
DEFAULT_MODE: DurabilityMode = "local"
DEFAULT_REPLICA_TIMEOUT_MS = 200
# A replica wait must end before the client's socket timeout (core/redis.py), or the socket
# gives up first and the caller cannot tell "no replica" from "no Redis"; WAIT 0 would
# block forever. Hence 1 .. socket timeout minus half a second of slack.
MIN_REPLICA_TIMEOUT_MS = 1
MAX_REPLICA_TIMEOUT_MS = int(SOCKET_TIMEOUT_S * 1000) - 500
# Replicas that must confirm a write before its ack (WAITAOF 0 <n> / WAIT <n>).
REPLICA_ACKS = 1


def parse_durability_mode(raw: str | None) -> DurabilityMode:
    """``AUTHORITY_DURABILITY``: ``local`` (default when unset) or ``replica``; a
    :class:`~core.config.ConfigError` naming the variable otherwise."""
    value = config.parse_choice(config.lookup(MODE_ENV), raw or DEFAULT_MODE)
    return "replica" if value == "replica" else "local"


def parse_replica_timeout_ms(raw: str | None) -> int:
    """``AUTHORITY_REPLICA_TIMEOUT_MS``: milliseconds in 1 .. 1500 (default 200): below the
    socket timeout of the authority's clients; a ConfigError otherwise."""
    if raw is None or not raw.strip():
        return DEFAULT_REPLICA_TIMEOUT_MS
    return config.parse_duration(config.lookup(REPLICA_TIMEOUT_ENV), raw)


@dataclass(frozen=True)
class AckDurability:
    """What an ack waits for: ``local`` (the server's own AOF fsync) or ``replica``
    (also a replica's confirmation, at most ``replica_timeout_ms``)."""

    mode: DurabilityMode = DEFAULT_MODE
    replica_timeout_ms: int = DEFAULT_REPLICA_TIMEOUT_MS

    def __post_init__(self) -> None:
        parse_durability_mode(self.mode)
        parse_replica_timeout_ms(str(self.replica_timeout_ms))

    @property
    def waits_for_replica(self) -> bool:
        """Whether an ack waits for a replica's confirmation."""
        return self.mode == "replica"


# --- the startup check ----------------------------------------------------------------------


@dataclass(frozen=True)
class PersistenceReport:
    """What the authority's Redis said about its persistence and replication."""

    server: str  # "Redis 7.0.15", "Valkey 8.1.8"
    aof_enabled: bool
    fsync_policy: str | None  # always | everysec | no; None: unknown (CONFIG refused)
    source: Literal["config", "info"]  # where aof_enabled / fsync_policy came from
    role: str  # master | slave
    connected_replicas: int
    waitaof_supported: bool

    @property
    def persists_every_write(self) -> bool:
        """AOF on and fsynced before every reply: an acknowledged write survives a crash."""
        return self.aof_enabled and self.fsync_policy == "always"


def _server_name(info: Mapping[str, object]) -> str:
    valkey = info.get("valkey_version")
    return f"Valkey {valkey}" if valkey else f"Redis {info.get('redis_version', '?')}"


def _version(info: Mapping[str, object]) -> tuple[int, ...]:
    # Valkey reports the Redis version it is compatible with as redis_version (7.2.4).
    text = str(info.get("redis_version", "0"))
    return tuple(int(p) for p in text.split(".") if p.isdigit())


# Whether the server knows WAITAOF: COMMAND INFO answers [<its description>], or [None] on a
# server without it. Redis >= 7.2 and Valkey have it (the version decides when COMMAND is
# renamed or refused).
WAITAOF_PROBE = ("COMMAND INFO", "WAITAOF")
WAITAOF_SINCE = (7, 2)


def _waitaof_listed(reply: object) -> bool:
    return isinstance(reply, list) and bool(reply) and reply[0] is not None


def server_supports_waitaof(client: redis.Redis) -> bool:
    """Whether the server has WAITAOF (:data:`WAITAOF_PROBE`; the startup check)."""
    try:
        return _waitaof_listed(client.execute_command(*WAITAOF_PROBE))  # type: ignore[no-untyped-call]
    except redis.exceptions.ResponseError:
        return _version(client.info("server")) >= WAITAOF_SINCE


async def aserver_supports_waitaof(client: aioredis.Redis) -> bool:
    """Async :func:`server_supports_waitaof` (the first replica-mode ack of a client)."""
    try:
        return _waitaof_listed(await client.execute_command(*WAITAOF_PROBE))  # type: ignore[no-untyped-call]
    except redis.exceptions.ResponseError:
        return _version(await client.info("server")) >= WAITAOF_SINCE


def _config_value(client: redis.Redis, name: str) -> str | None:
    reply = client.config_get(name)
    value = reply.get(name) if isinstance(reply, dict) else None
    return None if value is None else str(value)


def inspect_persistence(client: redis.Redis) -> PersistenceReport:
    """Ask ``client``'s server how it persists writes (see :class:`PersistenceReport`)."""
    server = client.info("server")
    source: Literal["config", "info"]
    try:
        aof = _config_value(client, "appendonly")
        fsync = _config_value(client, "appendfsync")
        if aof is None:  # a proxy or managed service that answers CONFIG GET with nothing
            raise redis.exceptions.ResponseError("CONFIG GET appendonly returned nothing")
        aof_enabled, source = aof == "yes", "config"
    except redis.exceptions.ResponseError:
        # CONFIG renamed or refused (managed Redis, ACL): INFO still tells whether the AOF is
        # on, but not its fsync policy.
        persistence = client.info("persistence")
        aof_enabled, fsync, source = str(persistence.get("aof_enabled", "0")) == "1", None, "info"
    replication = client.info("replication")
    return PersistenceReport(
        server=_server_name(server),
        aof_enabled=aof_enabled,
        fsync_policy=fsync,
        source=source,
        role=str(replication.get("role", "?")),
        connected_replicas=int(replication.get("connected_slaves", 0)),
        waitaof_supported=server_supports_waitaof(client),
    )


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return url.split("?", 1)[0]
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def probe_persistence(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> PersistenceReport:
    """Connect to the Redis at ``url`` (a client of its own, closed after) and inspect it.

    Raises :class:`~core.errors.AuthorityUnavailable` with a one-line reason when the server
    does not answer within ``timeout_s`` or refuses the questions.
    """
    client = redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        return probe_client_persistence(client, where=_redacted(url), timeout_s=timeout_s)
    finally:
        client.close()


def probe_client_persistence(client: redis.Redis, *, where: str, timeout_s: float) -> PersistenceReport:
    """:func:`inspect_persistence` with one-line errors (a Sentinel-managed master's client,
    or one of :func:`probe_persistence`); ``where`` names the server in them."""
    try:
        return inspect_persistence(client)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise AuthorityUnavailable(
            f"the authority's Redis at {where} did not answer within {timeout_s:g} s ({exc})"
        ) from None
    except redis.exceptions.RedisError as exc:
        raise AuthorityUnavailable(f"the authority's Redis at {where} refused INFO: {exc}") from None


def persistence_problems(report: PersistenceReport, *, mode: DurabilityMode) -> list[str]:
    """Why acknowledged writes could be lost with this server in ``mode`` (empty: none).

    Both modes need the primary's AOF fsynced on every write: a primary that restarts
    empty would also empty its replicas when they resync. ``replica`` mode also needs a
    replica connected now, or every ack waits for the timeout and is refused.
    """
    problems: list[str] = []
    if not report.aof_enabled:
        problems.append("appendonly is no (a restart loses every write since the last snapshot)")
    elif report.fsync_policy is None:
        problems.append(
            "appendfsync is unknown (CONFIG GET was refused; INFO only shows that the AOF is on), "
            "so an fsync of every write cannot be verified"
        )
    elif report.fsync_policy != "always":
        problems.append(
            f"appendfsync is {report.fsync_policy}, not always (a crash of the host loses the "
            "writes of up to the last second)"
        )
    if mode == "replica":
        if report.role != "master":
            problems.append(f"the server is a {report.role}, not a primary")
        elif report.connected_replicas < REPLICA_ACKS:
            problems.append(
                f"{report.connected_replicas} replica(s) connected, {REPLICA_ACKS} needed: every ack "
                "would wait for the timeout and be refused with authority_unavailable"
            )
    return problems


# --- the ack ------------------------------------------------------------------------------


class _Coded(Protocol):
    @property
    def code(self) -> str: ...


Coded = TypeVar("Coded", bound=_Coded)

# Outcomes of ingest.lua: "ok" wrote on this connection; the others wrote nothing here but
# tell the client about earlier writes it will act on (a duplicate's ack, the last_seq of a
# gap or a fence: the client drops what it believes accepted), so they too may only be
# answered once those writes are on a replica.
INGEST_WROTE = frozenset({"ok"})
INGEST_ACKNOWLEDGES = frozenset({"dup", "gap", "fenced"})
# heartbeat.lua: "ok" wrote (its reply carries last_seq, which the client acts on);
# "fenced" acknowledges earlier writes.
HEARTBEAT_WROTE = frozenset({"ok"})
HEARTBEAT_ACKNOWLEDGES = frozenset({"fenced"})

CLUSTER_UNSUPPORTED = (
    "AUTHORITY_DURABILITY=replica is not supported on a Redis Cluster yet; use local (AOF "
    "fsync always on every primary) or one primary with replicas (Sentinel)"
)
# Where a client caches whether its server has WAITAOF (asked once per client).
_WAITAOF_ATTR = "_liveops_waitaof"


def wait_commands(*, timeout_ms: int, waitaof: bool) -> list[authority.Command]:
    """The replica wait sent after a write, within ``timeout_ms`` in all.

    Without WAITAOF: ``WAIT 1 <ms>`` (a replica has the write in memory). With it: ``WAIT 1
    <half>`` then ``WAITAOF 0 1 <rest>`` (a replica fsynced it to its AOF). WAITAOF alone,
    pipelined right behind the write, waits ~1 s on Valkey 8.1 (measured: every call): the
    replica gets the write and the primary's ack request in one read, answers before its
    fsync, and only reports the fsync with its once-a-second ack. The WAIT first lets the
    replica take the write in, so WAITAOF's own request finds the fsync done (p99 ~1 ms
    here). No local count in WAITAOF: ``appendfsync always`` already fsyncs the write on the
    primary before the script's reply. A timeout is never 0 (WAIT 0 blocks forever).
    """
    if not waitaof:
        return [("WAIT", REPLICA_ACKS, timeout_ms)]
    first = max(1, timeout_ms // 2)
    return [("WAIT", REPLICA_ACKS, first), ("WAITAOF", 0, REPLICA_ACKS, max(1, timeout_ms - first))]


def _replicas_confirmed(reply: object, command: authority.Command) -> int:
    if isinstance(reply, Exception):
        raise AuthorityUnavailable(f"{command[0]} failed: {reply}; not acknowledged, re-send the same seq")
    if isinstance(reply, int):  # WAIT
        return reply
    if isinstance(reply, list) and len(reply) == 2:  # WAITAOF: [local, replicas]
        return int(reply[1])
    raise AuthorityUnavailable(f"{command[0]} answered {reply!r}; not acknowledged, re-send the same seq")


def _require_replica(replies: list[object], commands: list[authority.Command], timeout_ms: int) -> None:
    """Raise AuthorityUnavailable unless every wait was confirmed by enough replicas."""
    for reply, command in zip(replies, commands):
        confirmed = _replicas_confirmed(reply, command)
        if confirmed < REPLICA_ACKS:
            what = "fsynced it to its AOF" if command[0] == "WAITAOF" else "received it"
            raise AuthorityUnavailable(
                f"no replica {what} within {timeout_ms} ms ({confirmed} of {REPLICA_ACKS}): "
                "not acknowledged; re-send the same seq (it is acknowledged once, as a duplicate "
                "if it was accepted)"
            )


async def _arun_with_ack(
    client: AsyncClient,
    call: authority.Call[Coded],
    durability: AckDurability,
    *,
    mark_key: str,
    wrote: Collection[str],
    acknowledges: Collection[str],
) -> Coded:
    if not durability.waits_for_replica:
        return await authority.arun(client, call)
    if not isinstance(client, aioredis.Redis):
        # A cluster client: WAIT must reach the node and connection of the boss's slot, which
        # redis-py's cluster pipeline does not promise. Never ack without the promised wait.
        raise AuthorityUnavailable(CLUSTER_UNSUPPORTED)
    waitaof: bool | None = getattr(client, _WAITAOF_ATTR, None)
    if waitaof is None:
        waitaof = await aserver_supports_waitaof(client)
        setattr(client, _WAITAOF_ATTR, waitaof)
    commands = wait_commands(timeout_ms=durability.replica_timeout_ms, waitaof=waitaof)
    out, replies = await authority.arun_then(client, call, commands)
    if out.code in acknowledges:
        # WAIT covers only the writes of its own connection, and this reply wrote nothing:
        # the write it acknowledges may have been made on another connection (the first
        # attempt of a re-sent seq). One tiny write here moves this connection's offset past
        # everything the primary had written, so the wait after it covers that write too.
        pipe = client.pipeline(transaction=False)
        pipe.incr(mark_key)
        for command in commands:
            pipe.execute_command(*command)
        replies = (await pipe.execute(raise_on_error=False))[1:]
    if out.code in wrote or out.code in acknowledges:
        _require_replica(replies, commands, durability.replica_timeout_ms)
    return out


async def aingest_acknowledged(
    client: AsyncClient,
    call: authority.Call[authority.IngestOutcome],
    durability: AckDurability,
    *,
    mark_key: str,
) -> authority.IngestOutcome:
    """Run an ingest call; in ``replica`` mode return only once a replica has what the
    outcome acknowledges, else raise :class:`~core.errors.AuthorityUnavailable`.

    ``mark_key`` is the boss's ``durable`` key (``core.keys.BossKeys.durable``): the write
    that lets a duplicate's WAIT cover the original acceptance.
    """
    return await _arun_with_ack(
        client, call, durability, mark_key=mark_key, wrote=INGEST_WROTE, acknowledges=INGEST_ACKNOWLEDGES
    )


async def aheartbeat_acknowledged(
    client: AsyncClient,
    call: authority.Call[authority.HeartbeatOutcome],
    durability: AckDurability,
    *,
    mark_key: str,
) -> authority.HeartbeatOutcome:
    """Run a heartbeat call; in ``replica`` mode its reply (``last_seq``, on which the client
    drops an in-flight delta as accepted) waits for a replica like an ingest's ack."""
    return await _arun_with_ack(
        client,
        call,
        durability,
        mark_key=mark_key,
        wrote=HEARTBEAT_WROTE,
        acknowledges=HEARTBEAT_ACKNOWLEDGES,
    )
