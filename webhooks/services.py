"""Webhook deliveries: one row per (endpoint, event occurrence), attempted by a Celery task.

Nothing here is called with a tick or a saga waiting on a game's endpoint: the fight_event
receiver only writes rows and enqueues (webhooks/receivers.py); the POST happens in
:func:`delivery_attempt`, on the ``webhooks`` queue (docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import random
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.errors import InvalidInput
from core.keys import WEBHOOK_EVENTS_PARKED
from core.redis import REDIS_DOWN, get_redis
from shards.services import DATABASE_DOWN
from webhooks.conf import DELIVER_TASK, webhook_setting
from webhooks.models import TEST_EVENT, DeliveryStatus, WebhookDelivery, WebhookEndpoint, secret_generate
from webhooks.selectors import deliveries_stuck, endpoints_for_event
from worldboss_sdk.webhooks import (
    HEADER_EVENT,
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    webhook_signature_header,
)

logger = logging.getLogger(__name__)

# What an attempt reads of a response (the rest is dropped): enough for an error message.
MAX_RESPONSE_BYTES = 4_096
MAX_ERROR_CHARS = 500
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "worldboss-webhooks/1"


# --- creating deliveries ---------------------------------------------------------------


def delivery_idempotency_key(*, endpoint_id: int, event_key: str) -> str:
    """The ``Webhook-Id`` of (endpoint, event occurrence): derived, so a repeat maps to it."""
    return "wh_" + hashlib.sha256(f"{endpoint_id}:{event_key}".encode()).hexdigest()[:40]


def _envelope(
    *,
    idempotency_key: str,
    event: str,
    key: str,
    boss_id: int | None,
    slug: str | None,
    fight: int | None,
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": idempotency_key,
        "event": event,
        "key": key,
        "created_at": now.isoformat(),
        "boss": None if boss_id is None else {"id": boss_id, "slug": slug},
        "fight": fight,
        "data": payload,
    }


def deliveries_create_for_event(
    *, boss_id: int, slug: str, fight: int, event: str, key: str, payload: dict[str, Any]
) -> list[int]:
    """Create the delivery rows of one event occurrence for every matching active endpoint and
    enqueue each new one; returns the ids of the rows this call created.

    A repeat of the same ``key`` (a saga step or a tick run again) creates nothing: the
    unique (endpoint, event key) constraint drops it, concurrent callers included.
    """
    endpoints = endpoints_for_event(event=event, boss_id=boss_id)
    if not endpoints:
        return []
    now = timezone.now()
    rows = [
        _delivery_new(
            endpoint=endpoint,
            event=event,
            key=key,
            boss_id=boss_id,
            slug=slug,
            fight=fight,
            payload=payload,
            now=now,
        )
        for endpoint in endpoints
    ]
    return _deliveries_insert(rows)


# Fight events parked in Redis while the database is unreachable, at most (the oldest go).
PARKED_EVENTS_MAX = 10_000


def deliveries_create_or_park(
    *, boss_id: int, slug: str, fight: int, event: str, key: str, payload: dict[str, Any]
) -> None:
    """:func:`deliveries_create_for_event`, or, while the database is unreachable, the event
    parked in Redis for :func:`parked_events_replay` (a tick raises ``boss.phase`` on Redis
    alone; its webhook must not be lost to a database outage)."""
    event_args = {"boss_id": boss_id, "slug": slug, "fight": fight, "event": event, "key": key}
    try:
        deliveries_create_for_event(**event_args, payload=payload)
    except DATABASE_DOWN as exc:
        try:
            r = get_redis()
            r.rpush(WEBHOOK_EVENTS_PARKED, json.dumps({**event_args, "payload": payload}))
            r.ltrim(WEBHOOK_EVENTS_PARKED, -PARKED_EVENTS_MAX, -1)
        except REDIS_DOWN:
            logger.error("fight event %s lost: the database and Redis are unreachable (%r)", key, exc)
            return
        logger.warning("fight event %s parked: the database is unreachable (%r)", key, exc)


def parked_events_replay(*, limit: int = 1_000) -> int:
    """Create the deliveries of the fight events parked while the database was unreachable,
    oldest first; returns how many. An event leaves the list only once its rows exist (a
    replay run twice creates nothing twice: the event key is unique per endpoint); a
    database error stops the replay, with the rest still parked."""
    r = get_redis()
    replayed = 0
    while replayed < limit:
        raw = r.lindex(WEBHOOK_EVENTS_PARKED, 0)
        if raw is None:
            break
        deliveries_create_for_event(**json.loads(raw))
        r.lrem(WEBHOOK_EVENTS_PARKED, 1, raw)
        replayed += 1
    return replayed


def _delivery_new(
    *,
    endpoint: WebhookEndpoint,
    event: str,
    key: str,
    boss_id: int | None,
    slug: str | None,
    fight: int | None,
    payload: dict[str, Any],
    now: datetime,
) -> WebhookDelivery:
    """An unsaved delivery of one event occurrence to ``endpoint``, due now."""
    idem = delivery_idempotency_key(endpoint_id=endpoint.pk, event_key=key)
    envelope = _envelope(
        idempotency_key=idem,
        event=event,
        key=key,
        boss_id=boss_id,
        slug=slug,
        fight=fight,
        payload=payload,
        now=now,
    )
    return WebhookDelivery(
        endpoint=endpoint,
        event=event,
        event_key=key,
        idempotency_key=idem,
        payload=envelope,
        next_attempt_at=now,
    )


def _deliveries_insert(rows: list[WebhookDelivery]) -> list[int]:
    idems = [row.idempotency_key for row in rows]
    existing = set(
        WebhookDelivery.objects.filter(idempotency_key__in=idems).values_list("idempotency_key", flat=True)
    )
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    # A concurrent caller may have created one of these in between: both then enqueue it, and
    # the attempt's claim (delivery_attempt) lets only one of the two tasks send.
    new_ids = list(
        WebhookDelivery.objects.filter(idempotency_key__in=set(idems) - existing).values_list("pk", flat=True)
    )
    for delivery_id in new_ids:
        delivery_enqueue(delivery_id=delivery_id)
    return new_ids


def delivery_enqueue(*, delivery_id: int, countdown_s: float = 0) -> None:
    """Enqueue an attempt of ``delivery_id`` once the current transaction commits.

    A failed enqueue (broker down) is logged: the row stays pending and the sweep
    (:func:`deliveries_sweep`) enqueues it again.
    """

    def send() -> None:
        try:
            current_app.send_task(
                DELIVER_TASK, kwargs={"delivery_id": delivery_id}, countdown=countdown_s or None
            )
        except Exception as exc:  # the broker's errors are many; the sweep covers them all
            logger.warning("webhook delivery %s not enqueued (the sweep will): %r", delivery_id, exc)

    transaction.on_commit(send)


def endpoint_test_send(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Create and enqueue a ``webhook.test`` delivery to ``endpoint`` (a new one each call)."""
    delivery = _delivery_new(
        endpoint=endpoint,
        event=TEST_EVENT,
        key=f"{TEST_EVENT}:{uuid.uuid4().hex}",
        boss_id=None,
        slug=None,
        fight=None,
        payload={"endpoint": endpoint.name, "message": "a test delivery from the World Boss platform"},
        now=timezone.now(),
    )
    delivery.save()
    delivery_enqueue(delivery_id=delivery.pk)
    return delivery


def delivery_retry(*, delivery: WebhookDelivery) -> bool:
    """Send a failed delivery again now, with a fresh budget of attempts; False when it is
    not failed (a pending one is already on its way, a delivered one is done)."""
    updated = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now(), updated_at=timezone.now()
    )
    if updated:
        delivery_enqueue(delivery_id=delivery.pk)
    return bool(updated)


# Fields of an endpoint a caller may set (the API); the secret is the platform's own.
ENDPOINT_FIELDS = ("name", "url", "events", "boss", "active", "timeout_ms")


def endpoint_save(*, endpoint: WebhookEndpoint | None, fields: dict[str, Any]) -> WebhookEndpoint:
    """Create (``endpoint`` None) or change an endpoint: the model's validation, then save;
    :class:`core.errors.InvalidInput` naming the first wrong field. The secret of a new one is
    generated here (read it once from the result)."""
    unknown = sorted(set(fields) - set(ENDPOINT_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    endpoint = endpoint or WebhookEndpoint()
    for name, value in fields.items():
        setattr(endpoint, name, value)
    try:
        endpoint.full_clean()
    except ValidationError as exc:
        errors = getattr(exc, "error_dict", None) or {"__all__": exc.error_list}
        field, problems = next(iter(errors.items()))
        text = " ".join(m for e in problems for m in e.messages)
        raise InvalidInput(f"{field}: {text}" if field != "__all__" else text, field=field) from None
    endpoint.save()
    return endpoint


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """Give ``endpoint`` a new secret and return it (shown once). The old one keeps signing
    next to it (a second ``v1=`` value) for WEBHOOK_SECRET_GRACE_S."""
    now = timezone.now()
    new = secret_generate()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(seconds=webhook_setting("WEBHOOK_SECRET_GRACE_S"))
    endpoint.secret = new
    endpoint.secret_rotated_at = now
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "secret_rotated_at"]
    )
    return new


def endpoint_signing_secrets(*, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a request to ``endpoint`` now: the current one, and the previous
    one while its rotation grace lasts."""
    out = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and now < expires:
        out.append(endpoint.previous_secret)
    return out


# --- attempting a delivery -------------------------------------------------------------


def delivery_backoff_s(*, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, capped, with
    jitter (between half and all of ``min(base * 2**(attempt-1), max)``)."""
    base_s = webhook_setting("WEBHOOK_BACKOFF_BASE_MS") / 1000
    cap_s = webhook_setting("WEBHOOK_BACKOFF_MAX_MS") / 1000
    ceiling = min(base_s * 2 ** max(attempt - 1, 0), cap_s)
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class HttpOutcome:
    """What one POST came to: a status code (None: no response), an error text, retryable?"""

    status_code: int | None
    error: str
    retryable: bool
    elapsed_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the endpoint's answer, not a place to send a signed body to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class PrivateDestination(OSError):
    """The endpoint's address is loopback, private, link-local or otherwise internal."""


def destination_problem(address: str) -> str | None:
    """Why a webhook must not be sent to ``address`` (an IP), or None.

    An endpoint URL is typed by a staff user, and its host resolves where DNS says: without
    this, a webhook could make the platform POST into its own network (Redis, PostgreSQL,
    metadata services). ``WEBHOOK_ALLOW_PRIVATE_DESTINATIONS`` (on in development, off in
    production) lets a deployment whose game backend lives on its private network opt in.
    """
    if settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS:
        return None
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return None
    return (
        f"the endpoint resolves to {ip}, an internal address: refused "
        "(WEBHOOK_ALLOW_PRIVATE_DESTINATIONS=1 allows it; docs/webhooks.md)"
    )


def _check_peer(sock: Any) -> None:
    # The address actually connected to, after DNS: a name that resolves (or re-resolves)
    # to an internal address is caught here, before a byte of the body is sent.
    if problem := destination_problem(sock.getpeername()[0]):
        sock.close()
        raise PrivateDestination(problem)


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self.sock)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self.sock)


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):  # type: ignore[no-untyped-def]
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):  # type: ignore[no-untyped-def]
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)


_OPENER = urllib.request.build_opener(_NoRedirects, _GuardedHTTPHandler, _GuardedHTTPSHandler)


def _snippet(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")[:MAX_ERROR_CHARS]


def webhook_post(*, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> HttpOutcome:
    """POST ``body`` to ``url``; never raises for what the network or the endpoint does.

    2xx: delivered. 5xx, 408, 429, timeouts and connection errors: retryable. Any other
    status (3xx, 4xx): not retryable. At most MAX_RESPONSE_BYTES of a response are read.
    """
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.perf_counter()
    code, error, retryable = _post(request, timeout_s=timeout_s)
    return HttpOutcome(code, error, retryable, int((time.perf_counter() - started) * 1000))


def _post(request: urllib.request.Request, *, timeout_s: float) -> tuple[int | None, str, bool]:
    """Send ``request``: its status code (None without a response), the error, retryable."""
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            data = response.read(MAX_RESPONSE_BYTES)
            code = response.status
    except urllib.error.HTTPError as exc:
        return _http_error(exc)
    except urllib.error.URLError as exc:
        return _url_error(exc.reason)
    except TimeoutError:
        return None, "timeout", True
    except (OSError, http.client.HTTPException) as exc:
        return None, f"connection error: {exc!r}", True
    except ValueError as exc:  # a URL urllib cannot use: no attempt will do better
        return None, f"invalid request: {exc}", False
    # 1xx and other oddities urllib passes through: refused like a 4xx
    return code, "" if 200 <= code < 300 else f"HTTP {code}: {_snippet(data)}".strip(), False


def _url_error(reason: object) -> tuple[None, str, bool]:
    """No response: a refused private destination (final), a timeout or a connection error."""
    if isinstance(reason, PrivateDestination):  # no attempt will do better
        return None, str(reason), False
    return None, "timeout" if isinstance(reason, TimeoutError) else f"connection error: {reason}", True


def _http_error(exc: urllib.error.HTTPError) -> tuple[int, str, bool]:
    """An error status: its code, the start of its body, and whether a retry may do better."""
    try:
        data = exc.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        data = b""
    finally:
        exc.close()
    retryable = exc.code >= 500 or exc.code in RETRYABLE_STATUS
    return exc.code, f"HTTP {exc.code}: {_snippet(data)}".strip(), retryable


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes POSTed for ``delivery`` (the same on every attempt)."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class AttemptResult:
    """What :func:`delivery_attempt` did: ``outcome`` is skipped | not_due | delivered |
    retry | failed."""

    outcome: str
    attempts: int = 0
    retry_in_s: float | None = None


def delivery_attempt(*, delivery_id: int, rng: random.Random | None = None) -> AttemptResult:
    """Claim ``delivery_id`` if it is pending and due, POST it, record the outcome on the row.

    The claim is one conditional UPDATE (status pending, due, attempts unchanged) that moves
    ``next_attempt_at`` to the end of a lease: of two workers given the same delivery, one
    sends and the other finds nothing to do. A retryable failure schedules the next attempt
    (exponential backoff with jitter) and enqueues it; the last one, or a refusal, marks the
    delivery failed.
    """
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return AttemptResult("skipped")
    endpoint = delivery.endpoint
    now = timezone.now()
    lease = timedelta(milliseconds=endpoint.timeout_ms + webhook_setting("WEBHOOK_LEASE_MARGIN_MS"))
    attempt = delivery.attempts + 1
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk,
        status=DeliveryStatus.PENDING,
        attempts=delivery.attempts,
        next_attempt_at__lte=now,
    ).update(attempts=attempt, next_attempt_at=now + lease, updated_at=now)
    if not claimed:
        return AttemptResult("not_due", attempts=delivery.attempts)
    mine = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=attempt)
    if not endpoint.active:
        mine.update(status=DeliveryStatus.FAILED, last_error="endpoint inactive", updated_at=now)
        return AttemptResult("failed", attempts=attempt)

    body = delivery_body(delivery)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER_ID: delivery.idempotency_key,
        HEADER_TIMESTAMP: timestamp,
        HEADER_EVENT: delivery.event,
        HEADER_SIGNATURE: webhook_signature_header(
            secrets=endpoint_signing_secrets(endpoint=endpoint, now=now), timestamp=timestamp, body=body
        ),
    }
    result = webhook_post(url=endpoint.url, body=body, headers=headers, timeout_s=endpoint.timeout_ms / 1000)
    finished = timezone.now()
    recorded = {
        "last_status_code": result.status_code,
        "last_error": result.error,
        "response_ms": result.elapsed_ms,
        "updated_at": finished,
    }
    # Every update below is conditional on this attempt's claim: a worker that outlived its
    # lease (the sweep sent again meanwhile) records nothing over the newer attempt.
    if result.delivered:
        mine.update(status=DeliveryStatus.DELIVERED, delivered_at=finished, **recorded)
        return AttemptResult("delivered", attempts=attempt)
    if result.retryable and attempt < webhook_setting("WEBHOOK_MAX_ATTEMPTS"):
        wait_s = delivery_backoff_s(attempt=attempt, rng=rng)
        if mine.update(next_attempt_at=finished + timedelta(seconds=wait_s), **recorded):
            delivery_enqueue(delivery_id=delivery.pk, countdown_s=wait_s)
        return AttemptResult("retry", attempts=attempt, retry_in_s=wait_s)
    mine.update(status=DeliveryStatus.FAILED, **recorded)
    logger.warning(
        "webhook delivery %s to %s failed after %d attempt(s): %s",
        delivery.pk,
        endpoint.name,
        attempt,
        result.error,
    )
    return AttemptResult("failed", attempts=attempt)


def deliveries_sweep(*, limit: int = 500) -> int:
    """Enqueue again the pending deliveries overdue by WEBHOOK_SWEEP_GRACE_MS (their task was
    lost, or their worker died mid-attempt and its lease ran out); returns how many.

    Each one's ``next_attempt_at`` moves to now, so the next sweep leaves it alone for a
    grace period while its task waits in the queue.
    """
    now = timezone.now()
    grace = timedelta(milliseconds=webhook_setting("WEBHOOK_SWEEP_GRACE_MS"))
    swept = 0
    for delivery_id, due in deliveries_stuck(before=now - grace, limit=limit):
        if WebhookDelivery.objects.filter(
            pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at=due
        ).update(next_attempt_at=now, updated_at=now):
            delivery_enqueue(delivery_id=delivery_id)
            swept += 1
    return swept
