"""Fixtures for the headless-Chromium page tests: a live server and a browser."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, start_uvicorn


@pytest.fixture
def asgi_server(transactional_db, monkeypatch):
    """uvicorn in a subprocess on the test database and Redis dbs; yields its base URL."""
    proc, base = start_uvicorn()
    # Playwright's sync API keeps an event loop in this thread; the ORM calls this test
    # makes between page steps are plain blocking calls, which Django would otherwise refuse.
    # (Set after the server started, so only this test process has it.)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    try:
        yield base
    finally:
        proc.stop()


@pytest.fixture
def browser():
    """Headless Chromium (Debian's /usr/bin/chromium) through Playwright."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (make browser installs it); page tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
            # While Playwright's loop runs in this thread, Django keeps the ORM's connections
            # in a context-local slot (asgiref.local.Local), not the thread-local one the test
            # teardown closes: close them here, or PostgreSQL cannot drop the test database.
            connections.close_all()
