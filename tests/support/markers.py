"""The suite's markers, kept honest: what ``make test`` leaves out, and a guard behind it.

``make test`` runs ``-m "not slow"``, the developer suite. A test that starts a real process
(uvicorn, a Celery worker or beat, redis-server, a cluster or sentinels, manage.py) is marked
``process``; one that drives headless Chromium is marked ``browser``; both imply ``slow``
(:func:`pytest_collection_modifyitems` adds it). The process starters of ``tests/support``
call :func:`require_process_marker`, so a test that starts a process without the marker
fails with a line saying so instead of quietly slowing down the developer suite.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); ``tests/test_markers.py`` proves it.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

# Markers whose tests are left out of the developer suite as ``slow`` too.
IMPLY_SLOW = ("process", "browser")

_current: pytest.Item | None = None


class ProcessNotMarked(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """A test started a real process without the ``process`` marker (fails the test)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add ``slow`` to every ``process``/``browser`` test, before ``-m`` deselects."""
    for item in items:
        if item.get_closest_marker("slow") is None and any(item.get_closest_marker(m) for m in IMPLY_SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Remember the running test for the whole of its setup (module fixtures too), call and teardown."""
    global _current
    outer, _current = _current, item  # a run nested in a test (tests/test_markers.py) restores it
    try:
        return (yield)
    finally:
        _current = outer


def require_process_marker(what: str) -> None:
    """Refuse to start ``what`` for a test that is not marked ``process``.

    Outside a test (a tool importing the starters) there is nothing to check.
    """
    item = _current
    if item is None or item.get_closest_marker("process") is not None:
        return
    raise ProcessNotMarked(
        f"{item.nodeid} starts a real process ({what}) but is not marked `process`: add "
        "`pytestmark = pytest.mark.process` to the module (or @pytest.mark.process to the test) "
        "so that `make test` (-m 'not slow') leaves it out; see docs/testing.md",
        pytrace=False,
    )
