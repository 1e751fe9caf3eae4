"""The startup check of the authority's persistence, run by the ASGI app and the Celery worker.

Both acknowledge damage (the gateway) or apply it (the worker), so both first ask the
authority's Redis whether it persists every write (``core.durability.probe_persistence``).
When it does not, they log a loud WARNING and serve anyway, or, with
``AUTHORITY_REQUIRE_PERSISTENCE`` on (the default of ``DJANGO_ENV=production``), refuse to
start: one line on stderr and exit status 1, before anything is served. See docs/durability.md.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import redis
from django.conf import settings

from core import durability
from core import redis as core_redis
from core.errors import AuthorityUnavailable
from shards.checks import authority_topology_problem

log = logging.getLogger("liveops.durability")
# What a refusal starts with, on stderr (tests and operators grep for it).
REFUSAL_PREFIX = "liveops: refusing to start"


def refuse_to_start(message: str) -> NoReturn:
    """End the process with ``message`` as one line on stderr (exit status 1)."""
    # SystemExit, not an exception a framework would catch and print as a traceback:
    # uvicorn's import of the app and Celery's signal dispatch both let it through, and
    # Python prints its message as the last line on stderr.
    raise SystemExit(f"{REFUSAL_PREFIX}: {message}")


def authority_startup_check(component: str) -> durability.PersistenceReport | None:
    """Check the authority's persistence for ``component`` ("asgi", "worker").

    Returns what the server said (None when it did not answer and refusing is off). Warns,
    or refuses to start under ``AUTHORITY_REQUIRE_PERSISTENCE``, when the server does not
    persist every acknowledged write in the configured ``AUTHORITY_DURABILITY`` mode, or
    cannot be asked.
    """
    if problem := authority_topology_problem():  # docs/topologies.md
        refuse_to_start(f"{component}: {problem}")
    require = settings.AUTHORITY_REQUIRE_PERSISTENCE
    mode = settings.AUTHORITY_DURABILITY
    try:
        report = _probe()
    except _Unverifiable as exc:
        message = f"{component}: {exc}"
        if require:
            refuse_to_start(f"{message} (AUTHORITY_REQUIRE_PERSISTENCE is on)")
        log.warning("!!! %s", message)
        return None
    except AuthorityUnavailable as exc:
        message = f"{component}: cannot check the authority's persistence: {exc}"
        if require:
            refuse_to_start(f"{message} (AUTHORITY_REQUIRE_PERSISTENCE is on)")
        log.warning("%s; starting anyway, calls fail with authority_unavailable until it answers", message)
        return None
    problems = durability.persistence_problems(report, mode=mode)
    if not problems:
        how = "WAITAOF" if report.waitaof_supported else "WAIT (no WAITAOF on this server)"
        log.info(
            "%s: authority %s persists every write (AOF, appendfsync %s); durability %s%s",
            component,
            report.server,
            report.fsync_policy,
            mode,
            f", replica acks by {how}" if mode == "replica" else "",
        )
        return report
    message = (
        f"{component}: the authority ({report.server}) may lose acknowledged damage with "
        f"AUTHORITY_DURABILITY={mode}: " + "; ".join(problems)
    )
    if require:
        refuse_to_start(message)
    log.warning(
        "!!! %s. Fix: appendonly yes + appendfsync always on the authority's Redis; "
        "AUTHORITY_REQUIRE_PERSISTENCE=1 makes this a refusal to start (docs/durability.md)",
        message,
    )
    return report


class _Unverifiable(Exception):
    """The persistence of this topology cannot be checked (or promised) by this check."""


def _probe() -> durability.PersistenceReport:
    """Inspect the authority where the configured topology puts it (core/redis.py)."""
    try:
        kind = core_redis.topology_kind()
    except core_redis.REDIS_DOWN as exc:
        raise AuthorityUnavailable(f"the authority's Redis did not answer ({exc})") from None
    if kind == "cluster":
        if settings.AUTHORITY_DURABILITY == "replica":
            raise _Unverifiable(durability.CLUSTER_UNSUPPORTED)
        raise _Unverifiable(
            "the persistence of a Redis Cluster's primaries is not checked at start yet; make "
            "sure each runs appendonly yes + appendfsync always"
        )
    if kind == "sentinel":
        # The master the sentinels name now, through the project's own client.
        client = core_redis.get_redis()
        try:
            if not isinstance(client, redis.Redis):
                raise _Unverifiable("the Sentinel topology gave no plain client to inspect")
            return durability.probe_client_persistence(
                client, where="the Sentinel master", timeout_s=core_redis.SOCKET_TIMEOUT_S
            )
        finally:
            core_redis.reset_clients()  # the serving code makes its own, after start
    return durability.probe_persistence(settings.REDIS_URL)
