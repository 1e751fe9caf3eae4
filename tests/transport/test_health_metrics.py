"""``/healthz``, ``/readyz`` and ``/metrics`` in process (real Redis, the test database)."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from bosses.selectors import boss_state
from bosses.tasks import tick_live_bosses
from core import keys
from core.redis import get_redis, reset_clients
from tests.support.authority import delta_ingest
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_healthz_answers_without_any_dependency(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/10"  # nothing listens there: liveness does not care
    reset_clients()
    try:
        resp = Client().get("/healthz")
    finally:
        settings.REDIS_URL = settings.REDIS_URL
    reset_clients()
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_readyz_reports_each_check(settings):
    tick_live_bosses(partition=0, partitions=1)  # what the worker does on every beat
    resp = Client().get("/readyz")
    body = resp.json()
    assert resp.status_code == 200, body
    assert set(body["checks"]) == {"database", "authority", "broker", "beat"}
    assert all(c["status"] == "ok" for c in body["checks"].values())
    assert body["checks"]["beat"]["max_age_ms"] == settings.READY_TICK_MAX_AGE_MS

    # the beat stopped a minute ago: not ready, and the body says why
    get_redis().lpush(keys.TICK_TIMES, int(time.time() * 1000) - 60_000)
    resp = Client().get("/readyz")
    body = resp.json()
    assert resp.status_code == 503 and body["status"] == "fail"
    assert body["checks"]["beat"]["status"] == "fail" and "ms ago" in body["checks"]["beat"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_fails_on_an_unreachable_authority_without_leaking_its_password(settings):
    tick_live_bosses(partition=0, partitions=1)
    live_url = settings.REDIS_URL
    settings.REDIS_URL = "redis://:hunter2@127.0.0.1:1/10"
    reset_clients()
    try:
        resp = Client().get("/readyz")
    finally:
        settings.REDIS_URL = live_url
        reset_clients()
    assert resp.status_code == 503
    checks = resp.json()["checks"]
    assert checks["authority"]["status"] == "fail" and checks["database"]["status"] == "ok"
    assert b"hunter2" not in resp.content
    assert Client().get("/readyz").status_code == 200  # and back


def test_metrics_need_an_internal_address_or_the_token(settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="93.184.216.34").get("/metrics").status_code == 403
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401  # token set: loopback too
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    resp = Client(REMOTE_ADDR="93.184.216.34").get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/plain")


def test_ingest_and_tick_move_the_metrics(live_boss, make_session):
    sess = make_session("eu-1")
    before = samples(Client().get("/metrics").content)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    delta_ingest(boss_id=live_boss.pk, shard_key="eu-1", epoch=sess.epoch, seq=1, amount=250)
    delta_ingest(boss_id=live_boss.pk, shard_key="eu-1", epoch=sess.epoch, seq=1, amount=250)  # dup
    passes = 0

    def ticked() -> bool:  # beat-style passes until the boss's minimum interval let one apply
        nonlocal passes
        passes += 1
        tick_live_bosses(partition=0, partitions=1)
        return boss_state(boss_id=live_boss.pk).hp < live_boss.max_hp

    wait_until(ticked, what="a tick pass applied the delta")
    tick_live_bosses(partition=0, partitions=1)
    passes += 1
    after = samples(Client().get("/metrics").content)
    assert moved("worldboss_ingest_total", code="ok") == 1
    assert moved("worldboss_ingest_total", code="dup") == 1
    assert moved("worldboss_damage_applied_total", boss=live_boss.slug) == 250
    # a task within half an interval of the last pass returns at once (a backlog's stale one)
    ran = moved("worldboss_tick_duration_seconds_count")
    assert ran >= 1 and ran + moved("worldboss_tick_skipped_total") == passes
    assert moved("worldboss_tick_pass_bosses_count") == ran
    assert moved("worldboss_tick_interval_seconds_count") >= ran - 1


def test_readyz_is_degraded_not_failed_while_only_the_database_is_unreachable():
    from tests.support.database import database_unreachable

    tick_live_bosses(partition=0, partitions=1)
    with database_unreachable():
        resp = Client().get("/readyz")
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "degraded", body
    assert body["checks"]["database"]["status"] == "fail"
    assert all(body["checks"][name]["status"] == "ok" for name in ("authority", "broker", "beat"))
    assert Client().get("/readyz").json()["status"] == "ok"  # and back
