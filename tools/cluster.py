"""Local Redis Cluster and Sentinel setups for the demo, the bench and the tests.

Django-free (imported by tests before settings are configured). Everything is made with
plain Redis commands over redis-py, so no ``redis-cli`` is needed:

* :func:`cluster_create`: give N empty cluster-mode nodes equal ranges of the 16,384 slots
  (``CLUSTER ADDSLOTSRANGE``), introduce them to each other (``CLUSTER MEET``) and wait
  until every node reports ``cluster_state:ok`` and the same slot map. This is what
  ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`` does.
* :data:`CLUSTER_NODE_OPTIONS`: the options of a cluster node on top of
  ``tools.stack.redis_server_argv`` (AOF on, fsync always). ``cluster-require-full-coverage
  no`` keeps the other masters serving their slots while one master is down (the default
  stops the whole cluster when any slot is uncovered); a short node timeout lets the others
  notice a dead master within about a second.
* :func:`sentinel_config`: the config file of one ``redis-server --sentinel``.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import redis

SLOTS = 16_384
NODE_TIMEOUT_MS = 1_000
CLUSTER_NODE_OPTIONS: tuple[str, ...] = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    str(NODE_TIMEOUT_MS),
    "--cluster-require-full-coverage",
    "no",
)
CREATE_TIMEOUT_S = 20.0


# A cluster node also listens on its port + 10000 (the cluster bus), so its port must be at
# most 55535; the OS's ephemeral ports (tools.stack.free_port) are often above that.
MAX_CLUSTER_PORT = 55_535
BUS_PORT_OFFSET = 10_000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free loopback port for a cluster node (its bus port, +10000, free as well)."""
    for _ in range(200):
        port = random.randint(20_000, MAX_CLUSTER_PORT)
        if _bindable(port) and _bindable(port + BUS_PORT_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Equal, contiguous ``(first, last)`` slot ranges for ``masters`` nodes."""
    if masters < 1:
        raise ValueError("a cluster needs at least one master")
    step = SLOTS // masters
    ranges = []
    for i in range(masters):
        first = i * step
        last = SLOTS - 1 if i == masters - 1 else (i + 1) * step - 1
        ranges.append((first, last))
    return ranges


def _client(port: int, host: str = "127.0.0.1") -> redis.Redis:
    return redis.Redis(
        host=host, port=port, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
    )


def cluster_create(
    ports: Sequence[int], *, host: str = "127.0.0.1", timeout_s: float = CREATE_TIMEOUT_S
) -> None:
    """Make one cluster of the empty cluster-mode nodes on ``ports`` (all masters, no replicas).

    Raises RuntimeError naming what did not converge within ``timeout_s``.
    """
    clients = [_client(p, host) for p in ports]
    try:
        for client, (first, last) in zip(clients, slot_ranges(len(ports)), strict=True):
            client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER MEET", host, port)
        deadline = time.monotonic() + timeout_s
        while True:
            states = [c.execute_command("CLUSTER INFO") for c in clients]
            ok = all(
                s.get("cluster_state") == "ok" and int(s.get("cluster_known_nodes", 0)) == len(ports)
                for s in (_cluster_info(x) for x in states)
            )
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster on ports {list(ports)} did not converge: {states}")
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()


def _cluster_info(reply: object) -> dict[str, str]:
    # redis-py parses CLUSTER INFO into a dict; keep a text fallback for raw replies.
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def cluster_wait_ok(
    ports: Sequence[int], *, host: str = "127.0.0.1", timeout_s: float = CREATE_TIMEOUT_S
) -> None:
    """Wait until every node on ``ports`` reports ``cluster_state:ok`` (after a restart)."""
    deadline = time.monotonic() + timeout_s
    last: list[str] = []
    while True:
        last = []
        for port in ports:
            client = _client(port, host)
            try:
                last.append(_cluster_info(client.execute_command("CLUSTER INFO")).get("cluster_state", "?"))
            except redis.RedisError as exc:
                last.append(f"error: {exc}")
            finally:
                client.close()
        if all(s == "ok" for s in last):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster on ports {list(ports)} not ok: {last}")
        time.sleep(0.05)


def sentinel_config(
    path: Path, *, port: int, master_name: str, master_port: int, host: str = "127.0.0.1", quorum: int = 2
) -> Path:
    """Write the config of a sentinel watching ``master_name`` at ``host:master_port``.

    Short timeouts so a test's failover takes seconds: a master silent for 1 s is down, a
    failover may restart after 3 s. Sentinel rewrites this file as it learns (it must be
    writable), which is why it is a file of its own per sentinel.
    """
    path.write_text(
        "\n".join(
            [
                f"port {port}",
                f"bind {host}",
                "daemonize no",
                f"dir {path.parent.resolve()}",
                f"sentinel monitor {master_name} {host} {master_port} {quorum}",
                f"sentinel down-after-milliseconds {master_name} 1000",
                f"sentinel failover-timeout {master_name} 3000",
                f"sentinel parallel-syncs {master_name} 1",
                "",
            ]
        )
    )
    return path
