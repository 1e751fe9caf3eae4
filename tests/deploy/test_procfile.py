"""The deploy recipe, run: the Procfile's roles under honcho on production settings.

A Redis started here with the durable configuration (AOF, ``appendfsync always``, a
password), a database of its own on the local PostgreSQL (skipped with the reason when none
answers), ``DJANGO_ENV=production``, two uvicorn workers, a Celery worker and the one beat,
JSON logs and a metrics token. The test waits for ``/readyz``, scrapes ``/metrics``, fights
(an SDK game server and a hosted player over WebSockets, a viewer on the state socket),
checks the metrics moved, then stops Redis (``/readyz`` turns 503) and starts it again on the
same data (200 again), and stops everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.support.processes import ROOT, Proc
from tests.support.waiting import wait_until
from tools.stack import free_port, port_open, redis_binary, redis_server_argv

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_URL = os.environ.get("DEPLOY_TEST_PG_URL", f"postgres://postgres@{PG_HOST}:{PG_PORT}/test")
BOSS, SHARD_SDK, SHARD_HOSTED = "deploy-drake", "gs-1", "eu-1"
BIN = Path(sys.executable).parent


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database for the deployment (dropped afterwards)."""
    if not port_open(PG_HOST, PG_PORT):
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}; the deploy test needs one")
    try:
        admin = _pg_admin()
    except Exception as exc:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} refused the test: {exc}")
    name = f"liveops_deploy_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DurableRedis:
    """A redis-server with the durability the authority needs, restartable on its data."""

    def __init__(self, data_dir: Path, password: str) -> None:
        found = redis_binary()
        if found is None:
            pytest.skip("no redis-server or bundled Valkey to start")
        self.port = free_port()
        self.argv = redis_server_argv(
            found[0], port=self.port, data_dir=data_dir, extra=("--requirepass", password)
        )
        self.url = f"redis://:{password}@127.0.0.1:{self.port}/0"
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc("redis", self.argv, dict(os.environ))
        wait_until(lambda: port_open("127.0.0.1", self.port), what="redis listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def http(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def scrape(base: str, token: str) -> dict[tuple[str, tuple], float]:
    status, body = http(f"{base}/metrics", token)
    assert status == 200, body[:300]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


SETUP = f"""
from bosses.models import BossEncounter
from bosses.services import boss_go_live
from shards.services import shard_create
boss = BossEncounter.objects.create(name="Deploy Drake", slug="{BOSS}", max_hp=5_000_000,
                                    min_damage=10, max_damage=20, attacks_per_second=20)
boss_go_live(boss=boss)
shard_create(key="{SHARD_HOSTED}", name="Europe 1", region="eu", kind="hosted")
print("TOKEN", shard_create(key="{SHARD_SDK}", name="Game server 1", region="gs")[1])
"""


# Production refuses simulator mode: the hosted player carries a ticket its game signed.
TICKET_SECRET = secrets.token_urlsafe(32)


async def fight(ws_base: str, token: str) -> dict:
    """A viewer, an SDK game server and a hosted player, until the viewer sees the damage."""
    from worldboss_sdk import player_ticket_sign
    from worldboss_sdk.client import ShardClient

    seen: dict = {"versions": []}
    async with connect(f"{ws_base}/ws/bosses/{BOSS}/") as viewer:
        client = ShardClient(ws_base, shard=SHARD_SDK, token=token)
        await client.start()
        client.watch(BOSS)
        await client.wait_connected()
        ticket = player_ticket_sign(secret=TICKET_SECRET, key_id="game", player="p1", shard=SHARD_HOSTED)
        async with connect(f"{ws_base}/ws/shards/{SHARD_HOSTED}/?ticket={ticket}") as player:
            assert json.loads(await player.recv())["player"] == "p1"
            for n in range(5):
                await player.send(json.dumps({"type": "attack", "boss": BOSS, "id": n}))
                assert json.loads(await player.recv())["type"] in ("attack_ack", "error")
            for _ in range(5):  # five game frames of aggregated hits
                client.hit(BOSS, 1_000, player="hero")
                await asyncio.sleep(0.1)
            assert await client.flush()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    msg = json.loads(await asyncio.wait_for(viewer.recv(), 1))
                except TimeoutError:
                    continue
                if msg.get("type") == "state":
                    seen["versions"].append(msg["version"])
                    if msg["hp"] <= 5_000_000 - 5_000:  # every SDK hit applied by the beat's ticks
                        seen["last"] = msg
                        break
        await client.stop()
    return seen


def test_procfile_roles_serve_a_fight_with_metrics_and_readiness(pg_database, tmp_path):
    password, metrics_token = secrets.token_hex(12), secrets.token_hex(16)
    redis = DurableRedis(tmp_path / "redis", password)
    (tmp_path / "redis").mkdir()
    metrics_dir = tmp_path / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # what a deployment does before the roles start
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("BROKER_URL", "CHANNELS_URL", "TEST_DB_NAME", "LIVEOPS_SIMULATOR_PLAYERS")
        },
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "liveops.settings",
        "DJANGO_ENV": "production",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_hex(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback: no TLS proxy in front of this rig
        "DATABASE_URL": pg_database,
        "REDIS_URL": redis.url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": metrics_token,
        "PLAYER_TICKET_KEYS": f"game:{TICKET_SECRET}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "WEB_CONCURRENCY": "2",
        "BEAT_SCHEDULE_FILE": str(tmp_path / "celerybeat-schedule"),
        "READY_TICK_MAX_AGE_MS": "3000",
        "PYTHONUNBUFFERED": "1",
    }
    redis.start()
    honcho = None
    try:
        manage(env, "migrate", "--noinput")
        token = manage(env, "shell", "-c", SETUP).split("TOKEN", 1)[1].strip()
        honcho = Proc(
            "honcho",
            [
                str(BIN / "honcho"),
                "start",
                "-f",
                str(ROOT / "Procfile"),
                "-d",
                str(ROOT),
                "-p",
                str(port),
                "--no-colour",
            ],
            env,
        )
        base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        ready = wait_until(
            lambda: http(f"{base}/readyz")[0] == 200 or honcho.popen.poll() is not None,
            timeout_s=90,
            what="/readyz 200",
        )
        assert ready and honcho.popen.poll() is None, honcho.output()[-4000:]
        status, body = http(f"{base}/readyz")
        checks = json.loads(body)["checks"]
        assert status == 200 and {c["status"] for c in checks.values()} == {"ok"}, checks
        assert http(f"{base}/healthz")[0] == 200
        assert http(f"{base}/metrics")[0] == 401  # the token is set: nobody scrapes without it

        before = scrape(base, metrics_token)
        seen = asyncio.run(fight(ws_base, token))
        assert "last" in seen, seen
        assert seen["versions"] == sorted(set(seen["versions"]))

        def moved(after: dict, name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        # counted by the worker process and both web processes, added up by whichever answers
        after = wait_until(
            lambda: (
                (a := scrape(base, metrics_token))
                and moved(a, "worldboss_damage_applied_total", boss=BOSS) >= 5_000
                and a
            ),
            timeout_s=30,
            what="applied damage in the metrics",
        )
        assert moved(after, "worldboss_ingest_total", code="ok") >= 1
        assert moved(after, "worldboss_damage_accepted_total", boss=BOSS) >= 5_000
        assert moved(after, "worldboss_tick_duration_seconds_count") > 0
        assert moved(after, "worldboss_tick_interval_seconds_count") > 0
        assert moved(after, "worldboss_tick_pass_bosses_count") > 0
        assert moved(after, "worldboss_hub_states_delivered_total") >= 1
        assert moved(after, "worldboss_hub_publish_lag_seconds_count") >= 1
        assert moved(after, "worldboss_hosted_attacks_total", outcome="accepted") >= 1
        # every socket of the fight was closed again: the live gauges add up to zero
        for endpoint in ("state", "shard"):
            assert after.get(("worldboss_sockets_open", (("endpoint", endpoint),)), 0.0) == 0.0

        # readiness follows the authority: Redis stopped -> 503 naming it; back on its AOF -> 200
        redis.stop()
        wait_until(lambda: http(f"{base}/readyz")[0] == 503, timeout_s=30, what="/readyz 503")
        checks = json.loads(http(f"{base}/readyz")[1])["checks"]
        assert checks["authority"]["status"] == "fail" and checks["database"]["status"] == "ok"
        redis.start()
        wait_until(lambda: http(f"{base}/readyz")[0] == 200, timeout_s=60, what="/readyz 200 again")
        status, body = http(f"{f'http://127.0.0.1:{port}'}/api/bosses/{BOSS}/state")
        assert status == 200 and json.loads(body)["hp"] <= 5_000_000 - 5_000  # the AOF kept it
    finally:
        if honcho is not None:
            honcho.signal(signal.SIGTERM)
            try:
                honcho.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            honcho.stop()
        redis.stop()
    output = honcho.output() if honcho is not None else ""
    assert password not in output and metrics_token not in output
    json_lines = [json.loads(line.split("| ", 1)[1]) for line in output.splitlines() if "| {" in line]
    assert any(line.get("logger") for line in json_lines), output[-3000:]
