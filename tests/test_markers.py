"""The suite's markers: ``process`` and ``browser`` imply ``slow`` (so ``make test`` leaves them
out), and a test that starts a real process without ``process`` fails before it starts one."""

from __future__ import annotations

import pytest

from tests.support import processes, topologies
from tests.support.markers import ProcessNotMarked
from tests.support.redis_servers import RedisServer

# A suite of its own, run in this process by pytester: the project's markers plugin only.
INNER_ARGS = (
    "-p",
    "tests.support.markers",
    "-p",
    "no:django",
    "-p",
    "no:asyncio",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
)
INNER_INI = """
[pytest]
addopts = --strict-markers
markers =
    slow: left out
    process: starts a process
    browser: drives Chromium
    fault: injects a fault
"""

MARKED_SUITE = """
import pytest

@pytest.mark.process
def test_starts_a_worker():
    pass

@pytest.mark.browser
def test_opens_a_page():
    pass

@pytest.mark.fault
def test_injects_a_fault_in_process():
    pass

def test_plain():
    pass
"""

GUARD_SUITE = """
import pytest

from tests.support.markers import require_process_marker

@pytest.fixture(scope="module")
def server():
    require_process_marker("uvicorn")

@pytest.mark.process
def test_marked_may_start_one(server):
    require_process_marker("celery worker")

def test_unmarked_is_refused():
    require_process_marker("celery worker")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INNER_INI)
    return pytester


def test_process_and_browser_tests_are_slow_and_left_out_of_the_developer_suite(inner) -> None:
    inner.makepyfile(test_marked=MARKED_SUITE)
    fast = inner.runpytest_inprocess(*INNER_ARGS, "-m", "not slow", "-v")
    fast.assert_outcomes(passed=2, deselected=2)
    fast.stdout.fnmatch_lines(["*test_injects_a_fault_in_process PASSED*", "*test_plain PASSED*"])
    assert inner.runpytest_inprocess(*INNER_ARGS, "-m", "slow").parseoutcomes() == {
        "passed": 2,
        "deselected": 2,
    }


def test_a_process_started_without_the_marker_fails_with_a_clear_line(inner) -> None:
    inner.makepyfile(test_guard=GUARD_SUITE)
    result = inner.runpytest_inprocess(*INNER_ARGS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_unmarked_is_refused starts a real process (celery worker) but is not marked `process`*"]
    )


def test_a_module_fixture_that_starts_a_process_is_checked_against_its_first_test(inner) -> None:
    inner.makepyfile(test_guard=GUARD_SUITE.replace("def test_marked_may_start_one(server)", "def test_x()"))
    inner.makepyfile(
        test_module_fixture="""
from test_guard import server  # noqa: F401

def test_unmarked_uses_it(server):
    pass
"""
    )
    result = inner.runpytest_inprocess(*INNER_ARGS, "test_module_fixture.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_unmarked_uses_it starts a real process (uvicorn)*"])


def test_the_projects_starters_refuse_before_they_spawn_anything() -> None:
    # This test is not marked `process`: every starter of tests/support must stop here.
    with pytest.raises(ProcessNotMarked, match="celery"):
        processes.Proc("celery", ["sleep", "60"], env={})
    with pytest.raises(ProcessNotMarked, match="redis-server"):
        RedisServer("/usr/bin/redis-server")
    with pytest.raises(ProcessNotMarked, match="redis-server"):
        topologies.Node("/usr/bin/redis-server")
