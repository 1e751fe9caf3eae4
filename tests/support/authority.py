"""Sync callers of the shard ingest and heartbeat path, for tests that are not coroutines.

The product has one ingest and one heartbeat path, and it is async:
:func:`shards.services.adelta_ingest` and :func:`shards.services.aheartbeat_record`, awaited by
the gateway's sockets and the hosted shard. Async tests await them directly; sync tests (a
Celery stack, threads of submitters, property tests, a shard run as a process) call
:func:`delta_ingest` / :func:`heartbeat_record` here, which run exactly those coroutines.

Cheap per call, so a test can send tens of thousands of deltas from many threads: one event
loop per process runs in a daemon thread, with its own authority client (``get_async_redis``
keeps one per loop), and each call hands its coroutine to that loop
(``asyncio.run_coroutine_threadsafe``) and waits. ``asgiref.sync.async_to_sync`` would start a
new loop, and so a new client and TCP connection, on every call.

The database stays on the caller's thread, as under ``async_to_sync``: while it waits, the
calling thread runs the sync work the coroutine hands to ``sync_to_async`` (the epoch check's
SQL read), so that work sees the test's transaction and connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import AsyncToSync

from core.redis import get_async_redis
from shards.services import HeartbeatResult, IngestResult, adelta_ingest, aheartbeat_record

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
# The client the loop used last: closed once core.redis hands out another (reset_clients,
# which the tests' autouse fixture runs before every test), so no connection is left open.
_client: Any = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="tests-authority-loop", daemon=True).start()
            _loop = loop
        return _loop


async def _close_replaced_client() -> None:
    global _client
    try:
        current = get_async_redis()
    except Exception:  # the service's own call raises it again, as production would
        return
    if current is not _client:
        replaced, _client = _client, current
        if replaced is not None:
            # its server may be gone (a test's own servers, stopped): nothing to tell then
            with contextlib.suppress(redis.RedisError, OSError):
                await replaced.aclose()


def drive(service: Callable[..., Awaitable[T]], /, **kwargs: Any) -> T:
    """Run ``await service(**kwargs)`` on the background loop; its result or its exception.

    It blocks the calling thread, also one whose own loop runs (Playwright's sync API keeps
    one in a browser test's thread): the background loop is another thread, so the call
    finishes all the same. A coroutine test awaits the service instead.
    """
    executor = CurrentThreadExecutor(None)

    async def call() -> T:
        # A thread-sensitive sync_to_async inside the service finds this executor and runs
        # its function in the calling thread (asgiref's own async_to_sync does the same).
        AsyncToSync.executors.current = executor
        await _close_replaced_client()
        return await service(**kwargs)

    future = asyncio.run_coroutine_threadsafe(call(), _background_loop())
    executor.run_until_future(future)
    return future.result()


def delta_ingest(**kwargs: Any) -> IngestResult:
    """:func:`shards.services.adelta_ingest` from sync code (same keyword arguments)."""
    return drive(adelta_ingest, **kwargs)


def heartbeat_record(**kwargs: Any) -> HeartbeatResult:
    """:func:`shards.services.aheartbeat_record` from sync code (same keyword arguments)."""
    return drive(aheartbeat_record, **kwargs)


def background_client() -> Any:
    """The authority client the background loop uses (its cached WAITAOF answer, ...)."""
    return drive(_current_client)


async def _current_client() -> Any:
    return get_async_redis()
