"""The 64 KiB body cap counts the bytes received, whether the client declared a length or
sent the body chunked (``Transfer-Encoding: chunked``, no Content-Length)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from api.auth import MAX_BODY_BYTES

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def _chunked(base: str, method: str, path: str, key: str, body: bytes, chunk: int = 16 * 1024):
    """Send ``body`` chunked through http.client; the status and the decoded JSON answer."""

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            method,
            f"/api/v1{path}",
            body=chunks(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _draft(slug: str, size: int) -> bytes:
    """A valid draft boss, padded with JSON whitespace to ``size`` bytes."""
    body = json.dumps({"name": "Chunked", "slug": slug, "max_hp": 1000}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_a_chunked_body_over_the_cap_is_refused_and_creates_nothing(api, key):
    from bosses.models import BossEncounter

    big = _draft("chunked-big", 300 * 1024)
    assert len(big) > MAX_BODY_BYTES
    status, body = _chunked(api.base, "POST", "/bosses", key, big)
    assert (status, body["error"]["code"]) == (413, "too_large"), body
    assert not BossEncounter.objects.filter(slug="chunked-big").exists()
    # just over the cap, chunked: refused; at the cap: created (the bound is exact)
    status, body = _chunked(api.base, "POST", "/bosses", key, _draft("chunked-over", MAX_BODY_BYTES + 1))
    assert (status, body["error"]["code"]) == (413, "too_large"), body
    status, body = _chunked(api.base, "POST", "/bosses", key, _draft("chunked-fits", MAX_BODY_BYTES))
    assert (status, body["slug"]) == (201, "chunked-fits"), body
    # PATCH and a claim go through the same check
    status, body = _chunked(
        api.base, "PATCH", "/bosses/chunked-fits", key, b'{"name": "X"' + b" " * 300_000 + b"}"
    )
    assert (status, body["error"]["code"]) == (413, "too_large"), body
    assert BossEncounter.objects.get(slug="chunked-fits").name == "Chunked"
    assert sorted(BossEncounter.objects.values_list("slug", flat=True)) == ["chunked-fits"]
