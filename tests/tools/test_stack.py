"""tools/stack.py: a restartable child is started again when it exits, up to a limit; every
child dies with its parent, even one killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from tools.stack import ROOT, Stack

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


def _gone(pid: int) -> bool:
    """True once ``pid`` ended (no such process, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


# A parent that starts a long-lived child the way ``how`` says, prints its pid, then waits.
PARENT = """
import sys, time
sys.path.insert(0, {root!r})
how = {how!r}
argv = [sys.executable, "-c", "import time; time.sleep(120)"]
if how == "stack":
    from tools.stack import ManagedProcess
    from pathlib import Path
    child = ManagedProcess("sleeper", argv, env={{}}, log_path=Path({log!r}))
else:
    import django, os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
    django.setup()
    from tests.support.processes import Proc
    child = Proc("sleeper", argv, dict(os.environ))
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how", ["stack", "tests"])
def test_a_child_dies_when_its_parent_is_killed_outright(tmp_path, how):
    """``kill -9`` of a parent runs none of its cleanup; its children (the demo's and the
    bench's :class:`ManagedProcess`, the tests' ``Proc``) end with it all the same."""
    script = PARENT.format(root=str(ROOT), how=how, log=str(tmp_path / "sleeper.log"))
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT
    )
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(lambda: _gone(child), timeout_s=5, what=f"child {child} to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
