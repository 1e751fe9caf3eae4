"""Fixtures of the transport tests."""

from __future__ import annotations

import asyncio

import pytest

from bosses import hosted
from transport.hub import get_hub


@pytest.fixture
async def cleanup():
    """After an in-process socket test: close this loop's hosted shards (no flush) and the hub."""
    yield
    for shard in list(hosted._gateways.get(asyncio.get_running_loop(), {}).values()):
        await shard.close(flush=False)
    await get_hub().close()
