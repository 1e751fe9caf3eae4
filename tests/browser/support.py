"""A live ASGI server (uvicorn subprocess) and headless Chromium for page and end-to-end tests."""
from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import processes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/worldboss-screens"))


def start_uvicorn(**env: str) -> tuple[processes.Proc, str]:
    """uvicorn serving liveops.asgi on a free port, with the test's Redis dbs and database.

    Uses the same WebSocket flags as production (liveops.fanout.UVICORN_WS_ARGS). Returns
    the process and its base URL once ``/`` answers.
    """
    from liveops.fanout import UVICORN_WS_ARGS

    port = processes.free_port()
    proc = processes.Proc("uvicorn", [sys.executable, "-m", "uvicorn", "liveops.asgi:application",
                                      "--host", "127.0.0.1", "--port", str(port), *UVICORN_WS_ARGS],
                          processes.subprocess_env(**env))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=2).read()
            return proc, base
        except OSError:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"uvicorn did not start:\n{proc.output()[-3000:]}")
            time.sleep(0.1)


def staff_session_cookie(username: str = "operator") -> str:
    """A signed-in staff session (stored in the test database the server reads)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user(username, password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value
