"""A user-space link emulator over TUN: delay with jitter, loss, and cut/heal, each way.

This kernel has no ``sch_netem``, so the far link is a relay between two TUN devices: one on
the host (``<name>h``, address ``HOST_IP``) and one moved into a network namespace
(``<name>f``, address ``FAR_IP``). Every IP packet read from one side is written to the
other after ``delay_ms`` +/- ``jitter_ms`` (uniform; packets keep their order, as on one
path), or dropped with probability ``loss``. SIGUSR1 cuts the link (every packet dropped,
both ways: a partition), SIGUSR2 heals it.

    python -m tools.faults.link NAME NETNS --delay-ms 150 --jitter-ms 30 --loss 0.01 \
        --host-ip 10.231.0.1 --far-ip 10.231.0.2

Run as root. It opens both TUN devices (not persistent: they vanish when it exits, a
``kill -9`` included), moves the far one into ``NETNS``, sets addresses and routes, prints
``READY`` and relays until killed. It dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_PDEATHSIG = 1
MTU = 1500
HOST_IP = "10.231.0.1"
FAR_IP = "10.231.0.2"


def open_tun(name: str) -> int:
    """Create (not persistent) and open TUN device ``name``; returns its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Direction:
    """One way of the link: packets read from ``src`` are written to ``dst`` when due."""

    def __init__(self, src: int, dst: int, link: Link, seed: int):
        self.src, self.dst, self.link = src, dst, link
        self.random = random.Random(seed)
        self.queue: list[tuple[float, int, bytes]] = []
        self.cond = threading.Condition()
        self.last_due = 0.0
        self.count = 0
        self.dropped = 0

    def read_loop(self) -> None:
        while True:
            select.select([self.src], [], [])
            packet = os.read(self.src, MTU + 64)
            now = time.monotonic()
            if self.link.cut or self.random.random() < self.link.loss:
                self.dropped += 1
                continue
            delay = self.link.delay_s + self.random.uniform(-self.link.jitter_s, self.link.jitter_s)
            due = max(now + max(delay, 0.0), self.last_due)  # one path: no reordering
            self.last_due = due
            with self.cond:
                self.count += 1
                heapq.heappush(self.queue, (due, self.count, packet))
                self.cond.notify()

    def write_loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                due, _, packet = self.queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                heapq.heappop(self.queue)
            try:
                os.write(self.dst, packet)
            except OSError:
                pass  # the device is going down


class Link:
    """The emulated link's settings; ``cut`` is toggled by SIGUSR1/SIGUSR2."""

    def __init__(self, delay_ms: float, jitter_ms: float, loss: float):
        self.delay_s, self.jitter_s, self.loss = delay_ms / 1000, jitter_ms / 1000, loss
        self.cut = False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("netns")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--host-ip", default=HOST_IP)
    parser.add_argument("--far-ip", default=FAR_IP)
    args = parser.parse_args(argv)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    link = Link(args.delay_ms, args.jitter_ms, args.loss)
    signal.signal(signal.SIGUSR1, lambda *_: setattr(link, "cut", True))
    signal.signal(signal.SIGUSR2, lambda *_: setattr(link, "cut", False))
    host_dev, far_dev = f"{args.name}h", f"{args.name}f"
    host_fd, far_fd = open_tun(host_dev), open_tun(far_dev)
    ip("link", "set", far_dev, "netns", args.netns)
    ip("addr", "add", args.host_ip, "peer", args.far_ip, "dev", host_dev)
    ip("link", "set", host_dev, "mtu", str(MTU), "up")
    ns = ["-n", args.netns]
    ip(*ns, "addr", "add", args.far_ip, "peer", args.host_ip, "dev", far_dev)
    ip(*ns, "link", "set", far_dev, "mtu", str(MTU), "up")
    ip(*ns, "link", "set", "lo", "up")
    ways = [Direction(host_fd, far_fd, link, args.seed), Direction(far_fd, host_fd, link, args.seed + 1)]
    for way in ways:
        threading.Thread(target=way.read_loop, daemon=True).start()
        threading.Thread(target=way.write_loop, daemon=True).start()
    print("READY", flush=True)
    while True:
        time.sleep(1)
        if os.getppid() == 1:
            sys.exit(0)


if __name__ == "__main__":
    main()
