"""Hosts in network namespaces, joined to the host by an emulated link (tools/faults/link.py).

    with FarHost(delay_ms=150, jitter_ms=30, loss=0.01) as far:
        far.argv(["python", "-m", ...])   # a command run inside the namespace
        far.cut(); far.heal()             # a partition, both ways
        far.host_ip, far.far_ip           # the host's and the namespace's ends of the link

Needs root (``ip netns``, TUN). Each host gets a namespace ``wbf-<owner pid>-<n>`` and a /30
of 10.231.0.0/16 that no interface uses yet, so several test processes can run rigs at
once. Leaving the block kills what runs in the namespace and the link (its TUN devices
vanish with it) and deletes the namespace; a namespace whose owner died without cleaning up
(``kill -9``) is deleted by the next rig that starts. Traffic goes only between the host and
its own namespaces.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tools.stack import die_with_parent

PREFIX = "wbf-"
ROOT = Path(__file__).resolve().parents[2]
_numbers = itertools.count()


def _ip(*args: str, check: bool = False) -> str:
    """Run ``ip ARGS``; its output (``check``: raise when it fails)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check).stdout


def rig_available() -> str | None:
    """Why the rig cannot run here (None when it can): root, ``ip`` and /dev/net/tun needed."""
    if os.geteuid() != 0:
        return "needs root (ip netns, TUN devices)"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun"
    try:
        _ip("netns", "list", check=True)
        listed = True
    except (FileNotFoundError, subprocess.CalledProcessError):
        listed = False
    return None if listed else "needs iproute2 (ip netns)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_namespaces_remove() -> list[str]:
    """Delete the rig's namespaces whose owner process is gone (a run killed outright)."""
    out = _ip("netns", "list")
    removed = []
    for line in out.splitlines():
        name = (line.split() or [""])[0]
        owner = name.removeprefix(PREFIX).split("-")[0]
        if name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            for pid in _ip("netns", "pids", name).split():
                _kill(pid)
            _ip("netns", "del", name)
            removed.append(name)
    return removed


def _kill(pid: str) -> None:
    try:
        os.kill(int(pid), signal.SIGKILL)
    except (ProcessLookupError, ValueError):
        pass


def _free_link_addresses() -> tuple[str, str]:
    """The host and far ends of a /30 in 10.231.0.0/16 that no interface has."""
    shown = _ip("-o", "addr", "show")
    used = set(re.findall(r"\d+\.\d+\.\d+\.\d+", shown))
    start = os.getpid() % 16_384
    for i in range(16_384):
        block = (start + i) % 16_384
        third, fourth = block // 64, (block % 64) * 4
        host, far = f"10.231.{third}.{fourth + 1}", f"10.231.{third}.{fourth + 2}"
        if host not in used and far not in used:
            return host, far
    raise RuntimeError("no free /30 left in 10.231.0.0/16")


class FarHost:
    """A namespace behind an emulated link (see the module docstring)."""

    def __init__(self, *, delay_ms: float = 0, jitter_ms: float = 0, loss: float = 0):
        n = next(_numbers)
        self.name = f"{PREFIX}{os.getpid()}-{n}"
        self.device = f"wb{os.getpid() % 10**7}{n % 100}"  # + h / f: at most 15 characters
        self.settings = ["--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms), "--loss", str(loss)]
        self.host_ip, self.far_ip = "", ""
        self.link: subprocess.Popen | None = None

    def start(self) -> None:
        stale_namespaces_remove()
        self.host_ip, self.far_ip = _free_link_addresses()
        _ip("netns", "add", self.name, check=True)
        self.link = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.faults.link",
                self.device,
                self.name,
                *self.settings,
                "--host-ip",
                self.host_ip,
                "--far-ip",
                self.far_ip,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see die_with_parent
        )
        assert self.link.stdout is not None
        line = self.link.stdout.readline()
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"the link emulator did not start: {line!r}")

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Partition: every packet dropped, both ways, until :meth:`heal`."""
        self._signal(signal.SIGUSR1)

    def heal(self) -> None:
        """End a partition."""
        self._signal(signal.SIGUSR2)

    def _signal(self, sig: int) -> None:
        if self.link is None or self.link.poll() is not None:
            raise RuntimeError("the link emulator is not running")
        self.link.send_signal(sig)

    def stop(self) -> None:
        """Kill every process left in the namespace and the link, then delete the namespace."""
        for pid in _ip("netns", "pids", self.name).split():
            _kill(pid)
        if self.link is not None and self.link.poll() is None:
            self.link.kill()
            self.link.wait(timeout=10)
        _ip("netns", "del", self.name)

    def __enter__(self) -> FarHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
