"""The ASGI ``lifespan`` scope of the platform (liveops/asgi.py routes it here).

Channels has no lifespan handler of its own. This one ends the process's hosted-shard
sessions (bosses/hosted.py) with a ``bye`` when the server shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import time

from bosses.hosted import hosted_shards_shutdown

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 20.0  # the whole lifespan shutdown of a process's hosted shards


async def hosted_lifespan(scope, receive, send) -> None:
    """The ASGI ``lifespan`` protocol.

    Startup has nothing to do. Shutdown comes after the server closed every socket (uvicorn's
    graceful shutdown on SIGTERM, in every worker process): it ends this process's hosted
    sessions with a ``bye`` (:func:`~bosses.hosted.hosted_shards_shutdown`), so they are not
    left for the crash scan to declare crashed, and nothing they held waits for a heartbeat
    timeout.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            started = time.monotonic()
            try:
                # bounded: a process must exit; what is not ended by then the crash scan ends
                ended = await asyncio.wait_for(hosted_shards_shutdown(), SHUTDOWN_TIMEOUT_S)
                if ended:
                    logger.info(
                        "hosted shards ended on shutdown in %.2f s: %s", time.monotonic() - started, ended
                    )
            except Exception:
                logger.exception("hosted shards: shutdown failed")
            await send({"type": "lifespan.shutdown.complete"})
            return
