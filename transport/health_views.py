"""``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics`` (Prometheus).

* ``/healthz``: the process answers HTTP; touches nothing else (a load balancer's liveness
  probe: restart the process when it fails).
* ``/readyz``: every dependency a request needs answers: the database, the authority's Redis,
  the Celery broker, and the beat is ticking (the newest entry of the tick-times list,
  ``core.keys.TICK_TIMES``, is younger than ``READY_TICK_MAX_AGE_MS``). JSON with each check's
  status; 200 when all pass, 200 with status ``degraded`` when only the database fails (the
  hot path runs on Redis alone through a database outage: keep routing game servers and
  viewers here; docs/faults.md), else 503.
* ``/metrics``: the Prometheus exposition of every process on this host (core/metrics.py).
  With ``METRICS_TOKEN`` set it needs ``Authorization: Bearer <token>``; without it only
  loopback and private (internal) client addresses get an answer.

See docs/deploy.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from core import keys, metrics
from core.redaction import redact
from core.redis import get_redis

CHECK_TIMEOUT_S = 1.0
_broker_clients: dict[str, redis.Redis] = {}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: no dependency is asked."""
    return JsonResponse({"status": "ok"})


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def _check_authority() -> dict[str, Any]:
    get_redis().ping()
    return {}


def _check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = _broker_clients.get(url)
        if client is None:
            client = _broker_clients[url] = redis.Redis.from_url(
                url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
            )
        client.ping()
    else:  # another transport: let kombu connect once
        with Connection(url, connect_timeout=CHECK_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1)
    return {}


def _check_beat() -> dict[str, Any]:
    newest = get_redis().lindex(keys.TICK_TIMES, 0)
    bound = settings.READY_TICK_MAX_AGE_MS
    if newest is None:
        raise LookupError("no sync tick recorded yet (is the beat running, and a tick worker?)")
    age_ms = max(0, int(time.time() * 1000) - int(newest))
    if age_ms > bound:
        raise TimeoutError(f"newest sync tick started {age_ms} ms ago (bound {bound} ms)")
    return {"age_ms": age_ms, "max_age_ms": bound}


READY_CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": _check_database,
    "authority": _check_authority,
    "broker": _check_broker,
    "beat": _check_beat,
}


def _run(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"status": "ok", **check()}
    except Exception as exc:  # every failure is a failed check, never a 500
        result = {"status": "fail", "error": redact(f"{type(exc).__name__}: {exc}")[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


# Checks whose failure alone leaves the host serving the hot path (ingest, heartbeats, the
# tick, fan-out, sessions resuming): ``degraded``, still 200.
DEGRADABLE_CHECKS = frozenset({"database"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 with every check ``ok``; 200 ``degraded`` when only a degradable check
    failed (the database); else 503 (the body says which failed)."""
    checks = {name: _run(check) for name, check in READY_CHECKS.items()}
    failed = {name for name, c in checks.items() if c["status"] != "ok"}
    status = "ok" if not failed else "degraded" if failed <= DEGRADABLE_CHECKS else "fail"
    return JsonResponse({"status": status, "checks": checks}, status=503 if status == "fail" else 200)


def _internal_address(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def metrics_allowed(request: HttpRequest) -> bool:
    """A matching bearer token when ``METRICS_TOKEN`` is set; else an internal client address."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
    return _internal_address(request.META.get("REMOTE_ADDR", ""))


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition (401 without the token, 403 from outside without one set)."""
    if not metrics_allowed(request):
        if settings.METRICS_TOKEN:
            response = HttpResponse("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401)
            response["WWW-Authenticate"] = "Bearer"
            return response
        return HttpResponse(
            "metrics are served to internal addresses only (or set METRICS_TOKEN)\n", status=403
        )
    return HttpResponse(metrics.collect_text(), content_type=metrics.CONTENT_TYPE)
