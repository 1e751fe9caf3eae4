"""Prometheus metric definitions of the platform (Django-free; every layer counts through them).

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set in the environment *before the
process starts*, prometheus-client keeps every value in memory-mapped files in that
directory, one per process, and ``/metrics`` (transport/metrics_views.py) adds up the files of
every uvicorn worker and Celery worker on the host. Without it (tests, ``manage.py`` tools)
values live in this process's default registry. The directory must be emptied before the
roles start (docs/deploy.md); :func:`collect_text` also drops the live-gauge files of pids
that are gone (a restarted uvicorn worker), which prometheus-client leaves to the caller.

Labels are bounded: ``code``/``outcome``/``reason``/``op``/``endpoint``/``kind`` take a few
fixed values each; ``boss`` is the boss's slug (one series per boss a designer created, two
counters and one gauge per boss: see docs/deploy.md, "Cardinality"). No player, shard session or epoch is
ever a label.
"""

from __future__ import annotations

import glob
import os
import re
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from core import config

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_TICK_S = (0.025, 0.05, 0.075, 0.09, 0.1, 0.11, 0.125, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
_FAST_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_COUNT = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

TICK_INTERVAL = Histogram(
    "worldboss_tick_interval_seconds",
    "Time between the starts of two consecutive sync tick passes (beat cadence as the worker sees it).",
    buckets=_TICK_S,
)
TICK_DURATION = Histogram(
    "worldboss_tick_duration_seconds",
    "Wall time of one sync tick pass (read dirty sets, tick, publish, follow-ups).",
    buckets=_FAST_S,
)
TICK_SKIPPED = Counter(
    "worldboss_tick_skipped_total",
    "Sync tick tasks that returned at once: a pass of their partition started within half an interval (a backlog).",
)
TICK_BOSSES = Histogram(
    "worldboss_tick_pass_bosses",
    "Bosses ticked by one sync tick pass (the dirty ones of its partition).",
    buckets=_COUNT,
)
INGEST = Counter(
    "worldboss_ingest_total",
    "Shard deltas answered by the authority, by outcome code (ok, dup, fenced, gap, not_live, no_boss).",
    ["code"],
)
DAMAGE_ACCEPTED = Counter(
    "worldboss_damage_accepted_total",
    "Damage accepted into the platform buffer (not duplicates), by boss slug.",
    ["boss"],
)
DAMAGE_APPLIED = Counter(
    "worldboss_damage_applied_total",
    "Damage applied to the authoritative HP by sync ticks, by boss slug.",
    ["boss"],
)
SAGAS = Counter(
    "worldboss_sagas_total",
    "Sagas that ended, by kind (victory, crash) and outcome (completed, failed).",
    ["kind", "outcome"],
)
AUTHORITY_ERRORS = Counter(
    "worldboss_authority_errors_total",
    "Calls that found the authority's Redis unreachable, by operation.",
    ["op"],
)
EVENT_LOG_UNDECODABLE = Gauge(
    "worldboss_event_log_undecodable",
    "1 while a boss's event log holds an entry the archive cannot read (its archive stops "
    "before it; every other boss is archived as usual), else 0; by boss slug.",
    ["boss"],
    multiprocess_mode="mostrecent",  # the latest archive run of any worker tells the truth
)
SOCKETS_OPEN = Gauge(
    "worldboss_sockets_open",
    "Open WebSockets by endpoint (state, shard, ops, ops_overview).",
    ["endpoint"],
    multiprocess_mode="livesum",
)
HUB_STATES_DELIVERED = Counter(
    "worldboss_hub_states_delivered_total",
    "State messages the fan-out hub offered to local sockets (one per socket per state).",
)
HUB_STATES_STALE = Counter(
    "worldboss_hub_states_stale_total",
    "Published states the hub dropped because a newer version had already gone out.",
)
HUB_PUBLISH_LAG = Histogram(
    "worldboss_hub_publish_lag_seconds",
    "From the tick's timestamp (Redis TIME) to the hub handing the state to its sockets.",
    buckets=_FAST_S,
)
HOSTED_ATTACKS = Counter(
    "worldboss_hosted_attacks_total",
    "Player attacks on platform-hosted shards: outcome accepted, or the refusal's error code.",
    ["outcome"],
)
OPS_FEED_POLLS = Counter(
    "worldboss_ops_feed_polls_total",
    "Reads done by the operator feeds (one per feed per refresh, shared by all its sockets).",
    ["feed"],
)


def multiprocess_dir() -> str | None:
    """The multiprocess directory of this process (None: single-process mode)."""
    return config.read_str(MULTIPROC_ENV) or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_dead_live_gauges(path: str) -> None:
    """``mark_process_dead`` for every pid whose live-gauge file outlived it (same host)."""
    pids = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        tail = os.path.basename(name).rsplit("_", 1)[-1].removesuffix(".db")
        if tail.isdigit():
            pids.add(int(tail))
    for pid in pids:
        if not _pid_alive(pid):
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def collect_text() -> bytes:
    """The exposition text: every process of the host in multiprocess mode, else this one."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    _drop_dead_live_gauges(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


_TS = re.compile(r'"ts":\s*(\d+)')


def observe_hub_state(text: str, sockets: int) -> None:
    """One published state handed to ``sockets`` local sockets: count them, and observe the
    lag from the tick's ``ts`` (Redis TIME, ms) to now (once per state per process)."""
    HUB_STATES_DELIVERED.inc(sockets)
    match = _TS.search(text)
    if match is not None:
        HUB_PUBLISH_LAG.observe(max(0.0, time.time() - int(match.group(1)) / 1000))
