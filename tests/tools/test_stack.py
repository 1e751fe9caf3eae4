"""tools/stack.py: a restartable child is started again when it exits, up to a limit."""

from __future__ import annotations

import sys

import pytest

from tests.support.waiting import wait_until
from tools.stack import Stack

pytestmark = pytest.mark.process


def test_a_restartable_child_is_started_again_up_to_the_limit(tmp_path):
    with Stack(run_dir=tmp_path) as stack:
        flaky = stack.start("flaky", [sys.executable, "-c", "raise SystemExit(3)"], restart=True)
        once = stack.start("once", [sys.executable, "-c", "raise SystemExit(4)"])
        for expected in (1, 2):
            wait_until(lambda: not flaky.alive(), what="the flaky child to exit")
            assert stack.revive(limit=2) == [flaky]
            assert flaky.exits[-1] == 3 and flaky.restarts == expected
        wait_until(lambda: not flaky.alive(), what="the flaky child to exit a third time")
        assert stack.revive(limit=2) == []  # the limit: its death now ends the run
        assert {p.name for p in stack.dead()} == {"flaky", "once"}
        assert once.restarts == 0  # not restartable: never started again
        assert (tmp_path / "flaky.log").read_text().count("exited with 3; started again") == 2
