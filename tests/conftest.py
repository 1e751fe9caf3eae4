"""Shared fixtures: a real Redis (flushed per test), bosses, shard sessions, real processes."""

from __future__ import annotations

import itertools
import os

import pytest
import redis
from django.conf import settings

# The markers' hooks and the guard that a process-starting test is marked (docs/testing.md);
# pytester runs small suites in-process (tests/test_markers.py).
pytest_plugins = ["tests.support.markers", "pytester"]

# Tests flush their Redis dbs: never let them near db 0-7 (a developer's demo or prod data).
MIN_FLUSHABLE_DB = 8
_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    """Parallel workers must each have their own Redis (pub/sub is global to a server)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and not config.pluginmanager.has_plugin(
        "tests.support.worker_redis"
    ):
        pytest.exit(
            "parallel test workers need -p tests.support.worker_redis (each starts its own Redis); "
            "run make test, or pass -p tests.support.worker_redis with -n",
            returncode=2,
        )


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    db = int(client.connection_pool.connection_kwargs.get("db", 0))
    if db < MIN_FLUSHABLE_DB:
        pytest.exit(
            f"refusing to flush {url}: tests need REDIS_URL on db >= {MIN_FLUSHABLE_DB} "
            "(make test sets redis://127.0.0.1:6379/10)",
            returncode=2,
        )
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True, scope="session")
def frames_checked():
    """Every frame a test receives over a socket is checked against its TypedDict
    (core/messages.py) before the test sees it: the receive methods of Channels' test
    communicator and of the ``websockets`` client connection (the SDK's too) are wrapped."""
    from channels.testing import WebsocketCommunicator
    from websockets.asyncio.client import ClientConnection

    from tests.support.frame_schema import receive_checked

    wrapped = [(WebsocketCommunicator, "receive_from"), (ClientConnection, "recv")]
    saved = [(cls, name, cls.__dict__.get(name)) for cls, name in wrapped]
    for cls, name in wrapped:
        setattr(cls, name, receive_checked(getattr(cls, name)))
    yield
    for cls, name, original in saved:
        if original is None:
            delattr(cls, name)
        else:
            setattr(cls, name, original)


@pytest.fixture(autouse=True)
def clean_redis():
    """Every test starts with empty authority, broker and fan-out dbs."""
    for url in {settings.REDIS_URL, settings.BROKER_URL, settings.CHANNELS_URL}:
        _flush(url)
    from core.redis import reset_clients
    from shards import services

    reset_clients()
    services._known_epochs.clear()
    yield


@pytest.fixture(autouse=True)
def close_async_thread_connections():
    """Close the database connection that async tests open on asgiref's shared sync thread.

    ``sync_to_async`` outside a request runs on one process-wide thread; its connection outlives
    the test, and PostgreSQL then refuses to drop the test database at the end of the session
    ("being accessed by other users").
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def r():
    """The authority's sync client."""
    from core.redis import get_redis

    return get_redis()


@pytest.fixture
def make_boss(db):
    """Create a draft boss; keyword arguments override the defaults."""
    from bosses.models import BossEncounter

    def make(**fields):
        n = next(_counter)
        values = {
            "name": f"Boss {n}",
            "slug": f"boss-{n}",
            "max_hp": 1_000_000,
            "phases": "75:Enraged, 50:Frenzy, 25:Last stand",
        }
        values.update(fields)
        return BossEncounter.objects.create(**values)

    return make


@pytest.fixture
def live_boss(make_boss):
    """A boss that went live through the service (authority seeded)."""
    from bosses.services import boss_go_live

    boss = make_boss()
    boss_go_live(boss=boss)
    return boss


@pytest.fixture
def make_session(db):
    """Create a shard (token discarded) and open a session: ``make_session("eu-1")``."""
    from shards.models import Shard
    from shards.services import shard_create, shard_session_open

    def make(key: str | None = None):
        key = key or f"shard-{next(_counter)}"
        shard = Shard.objects.filter(key=key).first() or shard_create(key=key, name=key)[0]
        return shard_session_open(shard=shard)

    return make


@pytest.fixture
def celery_stack(transactional_db):
    """A real Celery worker and beat (subprocesses) on the test broker and database."""
    from tests.support import processes  # after the markers plugin (pytest_plugins) loaded

    procs = []
    try:
        procs.append(processes.start_worker())
        procs.append(processes.start_beat())
        yield procs
    finally:
        for proc in reversed(procs):
            proc.discard()
