"""The authority slow or down: Redis paused (SIGSTOP) or stopped and restarted, hits keep coming.

Each test starts its OWN redis-server on a free port (the shared test Redis is never touched)
and points this process's settings and clients at it. Callers never block past a bound (the
2 s socket timeout of core/redis.py), the hosted gateway keeps accepting hits into its
bounded buffer (``buffer_full`` past the bound, never a silent drop), and after recovery the
buffered damage lands as one catch-up delta with HP exact.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import redis as redis_lib
import redis.asyncio as aioredis

from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.errors import AuthorityUnavailable, BufferFull
from core.redis import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, reset_clients
from shards.services import shard_create
from tests.support import processes
from tests.support.authority import delta_ingest, heartbeat_record

pytestmark = [
    pytest.mark.process,
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

# No call may take longer than one socket timeout plus a connect timeout (plus scheduling slack).
CALL_BOUND_S = SOCKET_TIMEOUT_S + CONNECT_TIMEOUT_S + 1.0
OUTAGE_S = 4.0


class OwnRedis:
    """A redis-server of this test only (AOF on, so a restart keeps the authority)."""

    def __init__(self):
        self.port = processes.free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-outage-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis_lib.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        """A clean stop (SIGTERM: the AOF is complete), as an operator restart would do."""
        self.resume()
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_redis(settings):
    server = OwnRedis()
    settings.REDIS_URL = settings.BROKER_URL = settings.CHANNELS_URL = server.url
    reset_clients()
    yield server
    server.kill()
    reset_clients()


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    try:
        return fn(*args, **kwargs), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


def test_services_fail_fast_while_redis_is_paused_and_a_retried_seq_lands_once(
    own_redis, make_boss, make_session
):
    boss = make_boss(max_hp=100_000)
    boss_go_live(boss=boss)
    s = make_session()
    args = dict(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch)
    delta_ingest(**args, seq=1, amount=100)
    own_redis.pause()
    try:
        out, took = timed(delta_ingest, **args, seq=2, amount=250)
        assert isinstance(out, AuthorityUnavailable) and out.code == "authority_unavailable"
        assert took < CALL_BOUND_S
        out, took = timed(heartbeat_record, **args, pending=40)
        assert isinstance(out, AuthorityUnavailable) and took < CALL_BOUND_S
        out, took = timed(boss_tick, boss_id=boss.pk, force=True)
        assert isinstance(out, (redis_lib.TimeoutError, redis_lib.ConnectionError)) and took < CALL_BOUND_S
    finally:
        own_redis.resume()
    # The paused server may still run the timed-out ingest it had received; the protocol's
    # answer is to resend the SAME seq: accepted now, or acknowledged as a duplicate.
    again = delta_ingest(**args, seq=2, amount=250)
    assert again.seq == 2
    boss_tick(boss_id=boss.pk, force=True)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.hp == 100_000 - 350 and report.accepted == 350


@pytest.mark.parametrize("outage", ["paused", "restarted"])
async def test_gateway_keeps_accepting_hits_while_redis_is_away(own_redis, make_boss, monkeypatch, outage):
    from asgiref.sync import sync_to_async

    from bosses import hosted as gateway

    bound = 15_000
    monkeypatch.setattr(gateway, "GATEWAY_MAX_PENDING_DAMAGE", bound)
    boss = await sync_to_async(make_boss)(
        max_hp=10_000_000, min_damage=100, max_damage=100, attacks_per_second=100
    )
    await sync_to_async(boss_go_live)(boss=boss)
    await sync_to_async(shard_create)(key=f"hosted-{outage}", name="hosted", kind="hosted")
    hosted = gateway.HostedShard(f"hosted-{outage}", tick_ms=50)
    r = aioredis.Redis(port=own_redis.port, decode_responses=True)
    k = keys.BossKeys(boss.pk)
    dealt = refused = 0
    worst = 0.0

    async def attack_for(seconds: float, players: int = 40):
        nonlocal dealt, refused, worst
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                damage, _ = await hosted.attack(boss=boss, player=f"p{i % players}")
                dealt += damage
            except BufferFull as exc:
                assert exc.code == "buffer_full"
                refused += 1
            worst = max(worst, time.monotonic() - started)
            i += 1
            await asyncio.sleep(0.01)

    try:
        await attack_for(1.0)  # normal play: deltas land every 50 ms
        await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
        sess = f"hosted-{outage}:{hosted.sessions[boss.pk].epoch}"
        worst = 0.0
        if outage == "paused":
            own_redis.pause()
        else:
            await asyncio.to_thread(own_redis.stop)
        # Seqs this session has used when the outage began (the last one may be in flight).
        used_before = hosted.sessions[boss.pk].buffer.next_seq - 1
        try:
            # The loop keeps running: a timer set now fires on time although the shard tick
            # is waiting on Redis.
            await attack_for(OUTAGE_S)
        finally:
            if outage == "paused":
                own_redis.resume()
            else:
                await asyncio.to_thread(own_redis.start)
        assert worst < 0.25, f"an attack waited {worst:.3f}s while Redis was away"
        assert refused > 0 and hosted.sessions[boss.pk].buffer.pending <= bound  # bounded, refused loudly
        # Recovery: the retried in-flight delta and ONE catch-up delta carry everything held.
        deadline = time.monotonic() + 20
        while hosted.sessions[boss.pk].buffer.unacked and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert hosted.sessions[boss.pk].buffer.unacked == 0
        # At most: the delta in flight when the outage began (or the first one built during
        # it), re-sent with the same seq, plus ONE catch-up delta with everything else.
        assert int(await r.hget(k.seq, sess)) - used_before <= 2
    finally:
        await hosted.close(flush=False)
        await r.aclose()
    await sync_to_async(boss_tick)(boss_id=boss.pk, force=True)
    report = await sync_to_async(boss_verify)(boss=boss)
    assert report.ok, report.problems
    assert report.hp == 10_000_000 - dealt and report.applied == dealt


def test_an_outage_longer_than_the_heartbeat_timeout_does_not_crash_healthy_shards(
    own_redis, make_boss, make_session
):
    from bosses.sagas.crash import crashed_sessions_scan

    boss = make_boss(crash_policy="harsh", heartbeat_interval_ms=100, heartbeat_timeout_ms=1_000)
    boss_go_live(boss=boss)
    s = make_session()
    args = dict(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch)

    def beat_and_scan(seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            heartbeat_record(**args, pending=50)
            assert crashed_sessions_scan() == []
            time.sleep(0.1)

    beat_and_scan(0.5)
    own_redis.pause()  # nobody can heartbeat and the scanner cannot look: 2.5 s > the timeout
    time.sleep(2.5)
    own_redis.resume()
    # The shard's last heartbeat is 2.5 s old, but the silence was the platform's, not its own:
    # under harsh, declaring it crashed now would discard 50 damage of a healthy shard.
    assert crashed_sessions_scan() == []
    beat_and_scan(1.5)
    # A shard that really is gone after the recovery is still declared, one timeout later.
    time.sleep(1.2)
    [saga] = crashed_sessions_scan()
    assert (saga.policy, saga.amount) == ("harsh", 50)
