"""Wait for a condition instead of sleeping for a guessed time.

A test that needs "the worker drained the buffer" or "the socket got version 7" polls for
exactly that and goes on the moment it holds; the timeout is only the point at which the
test gives up, so it can be generous without making the suite slower.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 15.0
DEFAULT_INTERVAL_S = 0.02


class WaitTimeout(AssertionError):
    """The condition did not hold before the timeout (an assertion failure of the test)."""


def _poll(predicate: Callable[[], T], *, deadline: float, timeout_s: float, what: str | None) -> T:
    """Call ``predicate`` once: its value, falsy to poll again; WaitTimeout past ``deadline``."""
    value = predicate()
    if not value and time.monotonic() >= deadline:
        name = what or getattr(predicate, "__name__", repr(predicate))
        raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {name} (last value: {value!r})")
    return value


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
    while not (value := _poll(predicate, deadline=deadline, timeout_s=timeout_s, what=what)):
        time.sleep(interval_s)
    return value


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
    while not (value := _poll(predicate, deadline=deadline, timeout_s=timeout_s, what=what)):
        await asyncio.sleep(interval_s)
    return value
