"""The database made unreachable for a while, in this process: every query raises as in an outage.

:func:`database_unreachable` (sync tests) and :func:`adatabase_unreachable` (async tests,
whose ORM calls run on sync_to_async's thread) point the default connection at an address
where no database answers (PostgreSQL: a loopback port nobody listens on, so connecting is
refused; SQLite: a file in a directory that does not exist), so the ORM raises the
``OperationalError`` an outage raises; on leaving, the settings are restored. The open
connection is closed on entering and leaving (Channels' test communicator keeps
connections open between calls, so closing them is the helper's job). Only for tests whose
database is not wrapped in a transaction (``transaction=True``). The stopped server of a
whole stack is tests/support/pg_cluster.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from tools.stack import free_port


def _unreachable() -> dict[str, Any]:
    """Point the shared settings of the default connection nowhere; return what they were."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = os.path.join(tempfile.gettempdir(), "no-such-dir-db", "x.sqlite3")
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    return saved


def _restore(saved: dict[str, Any]) -> None:
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)  # the same dict: every thread's connection sees it


@contextmanager
def database_unreachable() -> Iterator[None]:
    saved = _unreachable()
    try:
        yield
    finally:
        _restore(saved)


@asynccontextmanager
async def adatabase_unreachable() -> AsyncIterator[None]:
    saved = await sync_to_async(_unreachable)()
    try:
        yield
    finally:
        await sync_to_async(_restore)(saved)
