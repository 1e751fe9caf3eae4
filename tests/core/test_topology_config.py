"""Bad Redis topology settings are refused at start with one line (docs/topologies.md).

``python manage.py check`` runs in a subprocess with the environment under test: parse errors
end the process with ``liveops: configuration error: ...``; what only the servers can tell (a
cluster flag on a plain node, a plain client on a cluster node, a master name no sentinel
monitors) is the system check ``liveops.E001``. Real servers only: the worker's Redis, a
cluster node and a Sentinel setup started here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from core import config
from core import redis as core_redis
from core.config import ConfigError
from tests.support.processes import ROOT
from tests.support.topologies import SENTINEL_MASTER, Node, redis_server, start_sentinel_setup
from tools.cluster import CLUSTER_NODE_OPTIONS

TOPOLOGY_VARS = ("REDIS_CLUSTER", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_DB")


def manage_check(**env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in TOPOLOGY_VARS}
    full.update(DJANGO_SETTINGS_MODULE="liveops.settings", BROKER_URL=settings.BROKER_URL, **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line that names the problem (no traceback anywhere)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "liveops" in line]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        ("127.0.0.1:26379", (("127.0.0.1", 26379),)),
        (" a:1 , b:2 ", (("a", 1), ("b", 2))),
        ("[::1]:26379", (("::1", 26379),)),
    ],
)
def test_sentinel_lists_that_parse(raw, accepted):
    assert core_redis.parse_sentinels(raw) == accepted


@pytest.mark.parametrize("raw", ["", "host", "host:", ":1", "a:1,,b:2", "a:70000", "a:x"])
def test_malformed_sentinel_lists_are_refused(raw):
    with pytest.raises(core_redis.TopologyConfigError, match="REDIS_SENTINELS"):
        core_redis.parse_sentinels(raw)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"REDIS_CLUSTER": "maybe"}, "REDIS_CLUSTER='maybe': expected one of 0, 1, auto"),
        ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINEL_MASTER is empty"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS is empty"),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_CLUSTER": "1"}, "choose one"),
        (
            {"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_DB": "x"},
            "REDIS_SENTINEL_DB='x': expected a whole number",
        ),
    ],
)
def test_contradictory_topologies_are_refused(env, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        core_redis.topology_from_env(env)


def test_topologies_that_parse():
    assert core_redis.topology_from_env({}).kind == "standalone"
    assert core_redis.topology_from_env({"REDIS_CLUSTER": "1"}).kind == "cluster"
    assert core_redis.topology_from_env({"REDIS_CLUSTER": "auto"}).kind == "auto"
    assert core_redis.topology_from_env({"REDIS_CLUSTER": " Yes "}).kind == "cluster"
    assert core_redis.topology_from_env({"REDIS_CLUSTER": "off"}).kind == "standalone"
    topo = core_redis.topology_from_env(
        {"REDIS_SENTINELS": "h:1,g:2", "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_DB": "3"}
    )
    assert (topo.kind, topo.sentinels, topo.master, topo.db) == ("sentinel", (("h", 1), ("g", 2)), "m", 3)


@pytest.mark.process
def test_manage_py_check_refuses_bad_values_with_one_line():
    proc = manage_check(REDIS_SENTINELS="10.0.0.1:26379,oops", REDIS_SENTINEL_MASTER="m")
    assert proc.returncode == config.EXIT_STATUS
    assert "liveops: configuration error: REDIS_SENTINELS=" in error_line(proc)

    proc = manage_check(REDIS_CLUSTER="1", REDIS_URL="redis://127.0.0.1:7000/3")
    assert proc.returncode == config.EXIT_STATUS
    assert "a Redis Cluster has only database 0" in error_line(proc)

    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "REDIS_CLUSTER": "1", "REDIS_URL": "redis://127.0.0.1:7000/0", "BROKER_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == config.EXIT_STATUS
    assert "BROKER_URL is not set" in error_line(proc)


@pytest.mark.process
def test_manage_py_check_asks_the_servers():
    # the cluster flag on a plain Redis (the worker's own)
    proc = manage_check(REDIS_CLUSTER="1", REDIS_URL=settings.REDIS_URL.rsplit("/", 1)[0] + "/0")
    assert proc.returncode == 1
    assert "is not a cluster node" in error_line(proc)
    # a cluster node used as a plain Redis
    node = Node(redis_server(), extra=CLUSTER_NODE_OPTIONS)
    try:
        proc = manage_check(REDIS_URL=f"redis://127.0.0.1:{node.port}/0")
        assert proc.returncode == 1
        assert "is a Redis Cluster node: set REDIS_CLUSTER=1" in error_line(proc)
    finally:
        node.stop()


@pytest.mark.process
def test_manage_py_check_refuses_a_master_no_sentinel_knows():
    setup = start_sentinel_setup()
    try:
        proc = manage_check(REDIS_SENTINELS=setup.addresses, REDIS_SENTINEL_MASTER="no-such-master")
        assert proc.returncode == 1
        line = error_line(proc)
        assert "REDIS_SENTINEL_MASTER='no-such-master' is not monitored" in line and SENTINEL_MASTER in line
        ok = manage_check(REDIS_SENTINELS=setup.addresses, REDIS_SENTINEL_MASTER=SENTINEL_MASTER)
        assert ok.returncode == 0, ok.stderr
    finally:
        setup.stop()
