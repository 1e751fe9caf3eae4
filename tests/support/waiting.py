"""Wait for a condition instead of sleeping for a guessed time.

A test that needs "the worker drained the buffer" or "the socket got version 7" polls for
exactly that and goes on the moment it holds; the timeout is only the point at which the
test gives up, so it can be generous without making the suite slower.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 15.0
DEFAULT_INTERVAL_S = 0.02


class WaitTimeout(AssertionError):
    """The condition did not hold before the timeout (an assertion failure of the test)."""


def _message(what: str | None, predicate: Callable[..., Any], timeout_s: float, last: Any) -> str:
    name = what or getattr(predicate, "__name__", repr(predicate))
    return f"timed out after {timeout_s:g} s waiting for {name} (last value: {last!r})"


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    what: str | None = None,
) -> T:
    """Call ``predicate`` every ``interval_s`` until it returns a truthy value, and return it.

    Fails with :class:`WaitTimeout` naming ``what`` (or the predicate) and its last value
    once ``timeout_s`` has passed. The predicate is always tried once more at the deadline,
    so a slow machine that got there just in time still passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(_message(what, predicate, timeout_s, value))
        time.sleep(interval_s)


async def wait_until_async(
    predicate: Callable[[], T],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    what: str | None = None,
) -> T:
    """:func:`wait_until` for async tests: polls without blocking the event loop.

    ``predicate`` is a plain (non-async) callable; the loop keeps running the sockets and
    tasks under test between two calls.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(_message(what, predicate, timeout_s, value))
        await asyncio.sleep(interval_s)
