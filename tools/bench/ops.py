"""Operator dashboards: CPU of the ASGI process with many operator sockets on one boss.

``manage.py bench --only ops``. One uvicorn process (the production flags) serves N staff
sockets on ``/ws/ops/bosses/<slug>/`` of one live boss with a realistic snapshot (four shards
with sessions and heartbeats, 200 ticks in the event log). Measured twice on the same boss:

* ``per-socket`` (``OPS_FEED_SHARED=0``, the previous behaviour): every socket runs its own
  refresh loop, one snapshot (SQL + three Redis round trips + JSON) per socket per 500 ms;
* ``shared`` (the default): one feed per boss per process reads the snapshot once per refresh
  and sends the same text to every socket (transport/ops_feed.py).

Reported: the server process's CPU time over the window as a share of one core (from
/proc/<pid>/stat, so Linux only), and the ``ops`` messages each socket received per second
(both modes must deliver the same ~2/s).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from tools.bench.harness import group_cpu_seconds, start_asgi, table, titled

SLUG = "bench-ops"
SIZES = {  # sockets, warm-up s, measured s
    "full": (100, 3.0, 20.0),
    "quick": (100, 2.0, 5.0),
    "smoke": (10, 0.5, 1.0),
}
TARGET_CPU_SHARE = 0.05


async def _feed(boss_id: int, sessions: list) -> None:
    """200 ticks of damage from the shards (an event-log tail), then a heartbeat of each."""
    from bosses.services import boss_tick
    from shards.services import aheartbeat_record
    from tools.bench.harness import ShardBuffer

    buffers = [ShardBuffer(boss_id=boss_id, key=s.shard_key, epoch=s.epoch) for s in sessions]
    for n in range(200):
        buf = buffers[n % len(buffers)]
        buf.hit(1_000)
        await buf.flush()
        await asyncio.to_thread(boss_tick, boss_id=boss_id, force=True)
    for buf in buffers:
        await aheartbeat_record(boss_id=boss_id, shard_key=buf.key, epoch=buf.epoch, pending=0)


def _prepare() -> str:
    """The live boss with shards and an event-log tail, and a staff session; returns its cookie."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from bosses.models import BossEncounter
    from bosses.services import boss_go_live
    from shards.models import Shard
    from shards.services import shard_create, shard_session_open
    from tools.bench.harness import run_loop

    BossEncounter.objects.filter(slug=SLUG).delete()
    boss = BossEncounter.objects.create(
        name="Bench Ops", slug=SLUG, max_hp=10**12, heartbeat_interval_ms=60_000, heartbeat_timeout_ms=120_000
    )
    boss_go_live(boss=boss)
    sessions = []
    for i in range(4):
        key = f"bench-ops-{i}"
        shard = Shard.objects.filter(key=key).first() or shard_create(key=key, name=key, region="eu")[0]
        sessions.append(shard_session_open(shard=shard))
    run_loop(_feed(boss.pk, sessions))
    # an operator: staff with every permission (a bench database may hold an older plain one)
    user, _ = get_user_model().objects.update_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def _watch(url: str, cookie: str, counts: list[int], index: int, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers={"Cookie": f"sessionid={cookie}"}, compression=None) as ws:
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            if '"type":"ops"' in text or json.loads(text).get("type") == "ops":
                counts[index] += 1


async def _measure(port: int, pid: int, cookie: str, sockets: int, warmup_s: float, seconds: float) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/ops/bosses/{SLUG}/"
    counts = [0] * sockets
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_watch(url, cookie, counts, i, stop)) for i in range(sockets)]
    await asyncio.sleep(warmup_s)
    start_counts, cpu0, t0 = sum(counts), group_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1, end_counts = group_cpu_seconds(pid), time.monotonic(), sum(counts)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    connected = sum(1 for c in counts if c > 0)
    elapsed = t1 - t0
    return {
        "sockets": sockets,
        "connected": connected,
        "seconds": round(elapsed, 1),
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / elapsed, 4),
        "ops_per_socket_s": round((end_counts - start_counts) / elapsed / max(1, sockets), 2),
    }


def ops_bench(*, mode: str, run_dir: Path, progress) -> dict[str, Any]:
    """Both modes on the same boss; returns ``{"rows": [...], "target_cpu_share": 0.05}``."""
    from tools.stack import Stack

    sockets, warmup_s, seconds = SIZES[mode]
    cookie = _prepare()
    rows = []
    for name, shared in (("per-socket", "0"), ("shared", "1")):
        progress(f"ops: {sockets} operator sockets, {name} feed")
        with Stack(run_dir=run_dir / f"ops-{name}", env={**os.environ, "OPS_FEED_SHARED": shared}) as stack:
            # served before the sockets open (its startup checks the authority): sockets opened
            # earlier were refused and never counted
            proc, base = start_asgi(stack)
            port = int(base.rsplit(":", 1)[1])
            row = asyncio.run(_measure(port, proc.pid, cookie, sockets, warmup_s, seconds))
        rows.append({"feed": name, **row})
    return {"rows": rows, "target_cpu_share": TARGET_CPU_SHARE, "loadavg_end": list(os.getloadavg())}


def ops_lines(ops: dict[str, Any] | None) -> list[str]:
    """The Markdown rows of the ``ops`` section."""
    lines, ok = titled("### Operator dashboards: one boss, many operator sockets (tools/bench/ops.py)", ops)
    if not ok:
        return lines
    rows = [
        f"| {r['feed']} | {r['sockets']} | {r['connected']} | {r['seconds']} s | {r['server_cpu_s']} | "
        f"{100 * r['cpu_share_of_one_core']:.1f} % | {r['ops_per_socket_s']} |"
        for r in ops["rows"]
    ]
    header = (
        "| feed | sockets | connected | window | server CPU s | share of one core | ops msgs / socket / s |"
    )
    return [
        *lines,
        *table(header, rows),
        f"Target: shared feed < {100 * ops['target_cpu_share']:.0f} % of one core.",
        "",
    ]
