"""Fixtures of the webhook tests: a real HTTP receiver on a loopback port, real workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import processes

# Short waits so a test sees several retries in well under a second; the worker reads them
# from its environment (webhooks/conf.py).
WORKER_ENV = {
    "WEBHOOK_BACKOFF_BASE_MS": "50",
    "WEBHOOK_BACKOFF_MAX_MS": "200",
    "WEBHOOK_MAX_ATTEMPTS": "4",
    "WEBHOOK_LEASE_MARGIN_MS": "300",
    "WEBHOOK_SWEEP_GRACE_MS": "0",
    "WEBHOOK_SWEEP_INTERVAL_MS": "200",
}
# A gated request waits at most this long for the test to open the gate (a test that fails
# before opening it must not leave the server thread hanging for ever).
GATE_TIMEOUT_S = 30.0


@dataclass
class Received:
    """One request as the receiver got it."""

    headers: dict[str, str]
    body: bytes
    path: str

    @property
    def id(self) -> str:
        return self.headers["Webhook-Id"]

    @property
    def event(self) -> str:
        return self.headers["Webhook-Event"]

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A game backend's webhook endpoint: records every POST and answers from a script.

    ``script`` holds the answers of the next requests in order (then 200): a status code,
    ``("sleep", seconds, status)`` or ``("gate", status)`` (answers once :meth:`open` is called).
    """

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: list = field(default_factory=list)
    answered: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def plan(self, *answers) -> None:
        with self.lock:
            self.script.extend(answers)

    def open(self) -> None:
        self.gate.set()

    def of_id(self, webhook_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.id == webhook_id]

    def events(self) -> list[str]:
        with self.lock:
            return [r.event for r in self.requests]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def _next(self):
        with self.lock:
            return self.script.pop(0) if self.script else 200


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.requests.append(Received(dict(self.headers.items()), body, self.path))
            answer = receiver._next()
            if isinstance(answer, tuple) and answer[0] == "sleep":
                time.sleep(answer[1])
                answer = answer[2]
            elif isinstance(answer, tuple) and answer[0] == "gate":
                receiver.gate.wait(GATE_TIMEOUT_S)
                answer = answer[1]
            try:
                payload = b'{"ok": true}' if answer < 300 else b"nope"
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the platform gave up on this request (its timeout): nothing to answer
            with receiver.lock:
                receiver.answered += 1

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server (http.server, a thread) on a free loopback port."""
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.open()
        server.shutdown()
        server.server_close()


@pytest.fixture
def start_worker(transactional_db):
    """Start real Celery workers (subprocesses) on the webhooks queue; stopped at the end."""
    procs = []

    def start(*, queues: str = "webhooks", concurrency: int = 4, **env: str) -> processes.Proc:
        proc = processes.start_worker(queues=queues, concurrency=concurrency, **{**WORKER_ENV, **env})
        procs.append(proc)
        return proc

    yield start
    for proc in reversed(procs):
        proc.discard()


@pytest.fixture
def webhook_worker(start_worker):
    """One real Celery worker consuming the webhooks queue."""
    return start_worker()


@pytest.fixture
def make_endpoint(transactional_db, receiver):
    """An active endpoint at the receiver taking every fight event; keywords override."""
    from bosses.signals import FIGHT_EVENTS
    from webhooks.models import WebhookEndpoint

    def make(**fields):
        values = {
            "name": "game backend",
            "url": receiver.url,
            "events": list(FIGHT_EVENTS),
            "timeout_ms": 2_000,
        }
        values.update(fields)
        endpoint = WebhookEndpoint(**values)
        endpoint.full_clean()
        endpoint.save()
        return endpoint

    return make
