"""A live ASGI server (uvicorn subprocess) and headless Chromium for page and end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import processes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/worldboss-screens"))


def start_uvicorn(**env: str) -> tuple[processes.Proc, str]:
    """uvicorn serving liveops.asgi on a free port, with the test's Redis dbs and database;
    returns the process and its base URL (production WebSocket flags)."""
    proc, port = processes.start_server(**env)
    return proc, f"http://127.0.0.1:{port}"


def staff_session_cookie(username: str = "operator") -> str:
    """A signed-in staff session (stored in the test database the server reads)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user(username, password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value
