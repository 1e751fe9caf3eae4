"""Real Redis topologies for tests: a 3-master Redis Cluster, and a Sentinel setup (a
master, a replica, three sentinels), all ``redis-server`` processes on loopback ports.

Every data node runs the project's command line (``tools.stack.redis_server_argv``: AOF on,
fsync always) in a temporary directory that survives :meth:`Node.kill9`, so
:meth:`Node.restart` brings the same node back on the same data (its AOF, and its
``nodes.conf`` on a cluster). :func:`use_topology` points this process's settings and Redis
clients at a topology, and :func:`topology_env` gives child processes the same view.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings

from core import redis as core_redis
from tests.support.markers import require_process_marker
from tools.cluster import CLUSTER_NODE_OPTIONS, cluster_create, cluster_port, cluster_wait_ok, sentinel_config
from tools.stack import die_with_parent, free_port, redis_server_argv

START_TIMEOUT_S = 20.0
SENTINEL_MASTER = "liveops-test"


def redis_server() -> str:
    """``redis-server`` on PATH (cluster and sentinel modes), or skip the test."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("redis-server is not on PATH")
    return found


class Node:
    """One ``redis-server`` of a topology; its data outlives a ``kill -9``."""

    def __init__(self, binary: str, *, extra: tuple[str, ...] = (), sentinel_conf: Path | None = None):
        self.binary = binary
        self.extra = extra
        self.sentinel_conf = sentinel_conf
        self.port = cluster_port() if "--cluster-enabled" in extra else free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="test-topology-"))
        self.popen: subprocess.Popen | None = None
        self.start()

    def argv(self) -> list[str]:
        log = str(self.dir / "server.log")
        if self.sentinel_conf is not None:
            return [self.binary, str(self.sentinel_conf), "--sentinel", "--logfile", log]
        return redis_server_argv(
            self.binary, port=self.port, data_dir=self.dir, extra=("--logfile", log, *self.extra)
        )

    def start(self) -> None:
        """Start (or restart) the server on its port and data dir; returns once it answers."""
        require_process_marker(Path(self.binary).name)
        self.popen = subprocess.Popen(
            self.argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - fork-safe: see die_with_parent
        )
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    pass
                except redis.ResponseError as exc:  # LOADING the AOF after a restart
                    if "LOADING" not in str(exc):
                        raise
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.binary} did not start:\n{self.log()[-2000:]}")
                time.sleep(0.02)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """A plain client of this one server."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5, socket_connect_timeout=1)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL, as a crashed host would die (the data dir stays)."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port and data dir (after :meth:`kill9`)."""
        self.kill9()
        self.start()

    def stop(self) -> None:
        """Kill the server and remove its data."""
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Cluster:
    """A Redis Cluster of masters only (no replicas), on loopback."""

    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed URL (database 0, the only one of a cluster)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def node_of(self, key: str) -> Node:
        """The master that serves ``key``'s slot now."""
        client = redis.cluster.RedisCluster.from_url(self.url, decode_responses=True)
        try:
            port = int(client.get_node_from_key(key).port)
        finally:
            client.close()
        return next(n for n in self.nodes if n.port == port)

    def wait_ok(self) -> None:
        """Every node reports ``cluster_state:ok`` (after a restart)."""
        cluster_wait_ok([n.port for n in self.nodes])

    def flush(self) -> None:
        for node in self.nodes:
            client = node.client()
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(masters: int = 3) -> Cluster:
    """A fresh cluster of ``masters`` masters (equal slot ranges)."""
    binary = redis_server()
    cluster = Cluster()
    try:
        for _ in range(masters):
            cluster.nodes.append(Node(binary, extra=CLUSTER_NODE_OPTIONS))
        cluster_create([n.port for n in cluster.nodes])
    except Exception:
        cluster.stop()
        raise
    return cluster


@dataclass
class SentinelSetup:
    """A master, one replica and three sentinels watching them (quorum 2)."""

    master: Node
    replica: Node
    sentinels: list[Node]

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def current_master_port(self) -> int | None:
        """The master's port as the first answering sentinel sees it."""
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                reply = client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                if reply:
                    return int(reply[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def stop(self) -> None:
        for node in (*self.sentinels, self.replica, self.master):
            node.stop()


def start_sentinel_setup() -> SentinelSetup:
    """Master + replica in sync, then three sentinels that agree on the master."""
    binary = redis_server()
    master = Node(binary, extra=("--repl-diskless-sync-delay", "0"))
    started: list[Node] = [master]
    try:
        replica = Node(binary, extra=("--replicaof", "127.0.0.1", str(master.port)))
        started.append(replica)
        client = master.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        while client.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica never came online")
            time.sleep(0.05)
        client.close()
        sentinels = []
        for _ in range(3):
            port = free_port()
            conf_dir = Path(tempfile.mkdtemp(prefix="test-sentinel-"))
            conf = sentinel_config(
                conf_dir / "sentinel.conf", port=port, master_name=SENTINEL_MASTER, master_port=master.port
            )
            node = Node.__new__(Node)
            node.binary, node.extra, node.sentinel_conf = binary, (), conf
            node.port, node.dir, node.popen = port, conf_dir, None
            node.start()
            sentinels.append(node)
            started.append(node)
        setup = SentinelSetup(master, replica, sentinels)
        # Wait until every sentinel knows the replica and the other sentinels (a failover
        # needs the quorum and a known replica to promote).
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ready = 0
            for s in sentinels:
                c = s.client()
                try:
                    m = c.sentinel_master(SENTINEL_MASTER)
                    if int(m.get("num-slaves", 0)) >= 1 and int(m.get("num-other-sentinels", 0)) >= 2:
                        ready += 1
                finally:
                    c.close()
            if ready == len(sentinels):
                return setup
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not discover each other and the replica")
            time.sleep(0.1)
    except Exception:
        for node in started:
            node.stop()
        raise


# --- pointing the platform at a topology ------------------------------------------------


def topology_env(*, redis_url: str, broker_url: str, **topology: str) -> dict[str, str]:
    """Environment of child processes (uvicorn, Celery) on the given topology."""
    env = {
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url,
        "CHANNELS_URL": broker_url,
        "REDIS_CLUSTER": "0",
        "REDIS_SENTINELS": "",
        "REDIS_SENTINEL_MASTER": "",
    }
    env.update(topology)
    return env


@contextmanager
def use_topology(env: dict[str, str]) -> Iterator[None]:
    """Point this process's settings, Redis clients and (for children) ``os.environ`` at the
    topology of ``env`` (:func:`topology_env`); everything is put back afterwards."""
    saved_settings = {name: getattr(settings, name) for name in ("REDIS_URL", "REDIS_TOPOLOGY")}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings.REDIS_URL = env["REDIS_URL"]
    settings.REDIS_TOPOLOGY = core_redis.topology_from_env(env)
    core_redis.reset_clients()
    try:
        yield
    finally:
        for name, value in saved_settings.items():
            setattr(settings, name, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        core_redis.reset_clients()
