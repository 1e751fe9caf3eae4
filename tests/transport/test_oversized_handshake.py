"""A WebSocket handshake that websockets refuses for its size is answered and closed: a
request line over 8 KiB (a 100 KB ``?ticket=``) gets 414, oversized headers 431; before,
the answer was prepared but never sent and the connection stayed open with no deadline
(transport/ws_protocol.py). Raw TCP against a live uvicorn with the production flags."""

from __future__ import annotations

import pytest

from tests.support import processes
from tests.support.waiting import wait_until
from tests.transport.test_handshake_guard import Raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120), pytest.mark.process]

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


@pytest.fixture
def port(transactional_db):
    proc, port = processes.start_server()
    try:
        yield port
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/ws/shards/eu-1/?ticket=" + "a" * 100_000, "", b"414"),
        ("/ws/shards/eu-1/?ticket=" + "a" * 9_000, "", b"414"),
        ("/ws/bosses/b/", "X-Padding: " + "p" * 9_000 + "\r\n", b"431"),
    ],
    ids=["ticket-100kb", "ticket-9kb", "header-9kb"],
)
def test_an_oversized_handshake_is_answered_and_closed(port, path, extra, status):
    raw = Raw(port, UPGRADE.format(path=path, extra=extra).encode())
    wait_until(raw.poll, what="the server closed the connection", timeout_s=15)
    assert raw.received.startswith(b"HTTP/1.1 " + status), raw.received[:200]


def test_a_ticket_that_fits_still_reaches_the_gateway(port):
    raw = Raw(port, UPGRADE.format(path="/ws/shards/eu-1/?ticket=" + "a" * 4_000, extra="").encode())
    wait_until(lambda: raw.poll() or b"\r\n\r\n" in raw.received, what="an answer", timeout_s=15)
    assert raw.received.startswith(b"HTTP/1.1 101"), raw.received[:200]  # the consumer refuses it after
