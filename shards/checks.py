"""The start-up check of the authority's Redis topology (docs/topologies.md).

Registered as a Django system check by ``ShardsConfig.ready`` (``manage.py check`` and every command that runs the
checks) and called by the ASGI app and the Celery worker before they serve
(``liveops.startup``): a configuration that cannot work is refused with one line at start,
instead of failing with MOVED or a missing master in the middle of a fight.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from core import redis as core_redis


def authority_topology_problem() -> str | None:
    """One line saying why the configured Redis topology cannot work, or None.

    Servers that do not answer are not refused here (calls fail with
    ``authority_unavailable`` until they do).
    """
    problem = core_redis.check_topology()
    if problem is None and settings.BROKER_URL_DEFAULTED and settings.REDIS_TOPOLOGY.kind == "auto":
        try:
            kind = core_redis.topology_kind()
        except core_redis.REDIS_DOWN:
            return None
        if kind == "cluster":
            problem = (
                "BROKER_URL is not set and REDIS_CLUSTER=auto found a Redis Cluster: Celery's broker "
                "cannot live there; set BROKER_URL to a standalone Redis (redis://host:6379/0)"
            )
    return problem


def authority_topology_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """System check: :func:`authority_topology_problem` as an error (``liveops.E001``)."""
    problem = authority_topology_problem()
    return [checks.Error(problem, id="liveops.E001")] if problem else []
