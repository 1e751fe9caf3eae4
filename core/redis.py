"""Redis clients for the authority: one sync pool per process, one asyncio pool per loop.

Django-free: the URL comes from a provider that the project wiring installs at start
(``shards.apps.ShardsConfig.ready`` hands it ``authority_url()``); without one it is
``$REDIS_URL``. The provider is read when a client is made, so tests that change the setting
call :func:`reset_clients`.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

_sync_client: redis.Redis | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_url_provider: Callable[[], str] = lambda: os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)

# Fail fast instead of blocking a game loop when the authority is unreachable.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0


def configure(*, url_provider: Callable[[], str]) -> None:
    """Take the authority's URL from ``url_provider`` from now on (forgets cached clients)."""
    global _url_provider
    _url_provider = url_provider
    reset_clients()


def authority_url() -> str:
    """The URL of the authority's Redis, as the installed provider gives it."""
    return _url_provider()


def get_redis() -> redis.Redis:
    """The process-wide sync client of the authority."""
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(
            authority_url(),
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            health_check_interval=30,
        )
    return _sync_client


def get_async_redis() -> aioredis.Redis:
    """The asyncio client of the authority for the running event loop."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            authority_url(),
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            # redis.asyncio retries 10 times by default (each attempt up to the socket
            # timeout): a paused Redis would hold a caller for ~30 s. Callers here retry on
            # their own schedule (the same seq next tick), so fail once, fast.
            retry=AsyncRetry(NoBackoff(), 0),
        )
        _async_clients[loop] = client
    return client


def reset_clients() -> None:
    """Forget cached clients (after a fork or when tests change ``REDIS_URL``)."""
    global _sync_client
    _sync_client = None
    _async_clients.clear()
