"""A live uvicorn per test module, API keys, and a small HTTP client (urllib)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import processes

ALL_SCOPES = ("read", "operate", "rewards")


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]  # names in lower case

    @property
    def code(self) -> str | None:
        """The refusal's stable code (None for a success)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"]["code"]
        return None


@dataclass
class Api:
    """Calls /api/v1/ on a live server."""

    base: str

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"{self.base}/api/v1{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, payload, got = exc.code, exc.read(), dict(exc.headers)
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return Reply(status, parsed, {k.lower(): v for k, v in got.items()})

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.call("POST", path, **kw)


@pytest.fixture(scope="module")
def api_server(django_db_setup, django_db_blocker):
    """One live uvicorn (liveops.asgi) on the test database and Redis for the module's tests."""
    proc, port = processes.start_server()
    try:
        yield Api(f"http://127.0.0.1:{port}")
    finally:
        proc.stop()


@pytest.fixture
def api(api_server, transactional_db):
    """The live server's API, with a database the server sees (committed, flushed after)."""
    return api_server


@pytest.fixture
def make_key(transactional_db):
    """``make_key("read", "operate")`` -> a new key's secret."""
    from api.services import apikey_create

    def make(*scopes: str, name: str = "test backend") -> str:
        return apikey_create(name=name, scopes=scopes or ALL_SCOPES)[1]

    return make


@pytest.fixture
def key(make_key) -> str:
    """A key with every scope."""
    return make_key(*ALL_SCOPES)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Browserless:
    """A cookie-keeping HTTP client for the pages and the admin of a live server (no
    redirects followed: a 302 is an answer)."""

    base: str

    def __post_init__(self) -> None:
        import http.cookiejar

        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def call(self, method: str, path: str, *, form: dict[str, str] | None = None) -> Reply:
        import urllib.parse

        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            request.add_header("Referer", f"{self.base}{path}")
        try:
            with self.opener.open(request, timeout=30) as response:
                status, payload, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, payload, got = exc.code, exc.read(), dict(exc.headers)
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return Reply(status, parsed, {k.lower(): v for k, v in got.items()})

    def login(self, username: str, password: str) -> Reply:
        """The admin's login form, as a browser sends it (its CSRF cookie and token)."""
        self.call("GET", "/admin/login/")
        return self.call(
            "POST",
            "/admin/login/?next=/admin/",
            form={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.cookie("csrftoken") or "",
                "next": "/admin/",
            },
        )


@pytest.fixture
def superuser(transactional_db):
    """A superuser ``root`` / ``pw-root`` (credentials returned)."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    return ("root", "pw-root")
