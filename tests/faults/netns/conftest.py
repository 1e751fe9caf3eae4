"""The fault rig: game servers in network namespaces of their own behind an emulated link.

Every test here needs root (``ip netns``, TUN devices, tools/faults); elsewhere it is
skipped with the reason. ``far_host`` gives a started :class:`tools.faults.netns.FarHost`
(a namespace, a link with the delay, jitter and loss the test asks for) and deletes it at
the end, whatever happened.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from tests.faults.conftest import FAST, SdkProcess
from tests.support import processes
from tools.faults.netns import FarHost, rig_available


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = rig_available()
    if reason is None:
        return
    for item in items:
        if "tests/faults/netns/" in item.nodeid:
            item.add_marker(pytest.mark.skip(reason=f"the fault rig {reason}"))


@pytest.fixture
def far_host() -> Iterator[Callable[..., FarHost]]:
    """``far_host(delay_ms=, jitter_ms=, loss=)``: a started namespace behind a link."""
    started: list[FarHost] = []

    def start(**link: float) -> FarHost:
        processes.require_process_marker("link emulator")
        host = FarHost(**link)
        started.append(host)
        host.start()
        return host

    try:
        yield start
    finally:
        for host in started:
            host.stop()


class FarSdk(SdkProcess):
    """tests/faults/sdk_proc.py inside a far host's namespace (the installed SDK)."""

    def __init__(self, host: FarHost, *args: str, **env: str):
        processes.Proc.__init__(
            self,
            "sdk",
            host.argv([sys.executable, "-m", "tests.faults.sdk_proc", *args]),
            processes.subprocess_env(**env),
        )

    def latest(self) -> dict:
        """Its newest PROGRESS line (before the first one: nothing acknowledged yet)."""
        rows = self.lines("PROGRESS")
        return rows[-1] if rows else {"acked": 0, "connects": 0, "epoch": None, "t": 0.0, "last_ack_t": 0.0}


@pytest.fixture
def rig_platform(transactional_db, far_host):
    """A far host (150 +/- 30 ms, 1 % loss each way) and the platform on the host: uvicorn
    on the link's host address, a worker and beat (200 ms crash scan)."""
    host = far_host(delay_ms=150, jitter_ms=30, loss=0.01)
    server, port = processes.start_server(host=host.host_ip)
    procs = [server]
    try:
        procs += [processes.start_worker(**FAST), processes.start_beat(**FAST)]
        yield host, f"ws://{host.host_ip}:{port}"
    finally:
        for proc in reversed(procs):
            proc.discard()
