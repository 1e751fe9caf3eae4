"""What every consumer shares: one receive -> dispatch loop without a channel layer."""

from __future__ import annotations

import logging

from channels.exceptions import StopConsumer

from core import metrics
from core.errors import LiveOpsError
from core.wire import error_frame
from worldboss_sdk.protocol import CloseCode

logger = logging.getLogger(__name__)


class DirectDispatchMixin:
    """For consumers without a channel layer: one plain receive -> dispatch loop.

    Channels' ``AsyncConsumer.__call__`` multiplexes the client and the channel layer with
    ``await_many_dispatch``, which creates a task and an ``asyncio.wait`` per incoming frame.
    A consumer with no layer has one source, so it awaits ``receive()`` directly: same
    semantics (frames handled one at a time, in order; ``StopConsumer`` ends it), a fraction
    of the per-frame cost. Put it before the Channels base class.
    """

    channel_layer_alias = "__no_channel_layer__"

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale DB connections before every handler through a thread-pool
        # hop (~50-100 us per frame). Handlers here reach the ORM only through
        # database_sync_to_async, which does that itself, so frames skip the hop.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class SocketGaugeMixin:
    """Counts the consumer's socket in ``worldboss_sockets_open{endpoint}`` from the handshake
    to the disconnect (every socket that got a ``websocket.connect`` gets one disconnect).
    Put it before the Channels base class and set ``metrics_endpoint``."""

    metrics_endpoint = "other"
    _gauge_counted = False

    async def websocket_connect(self, message: dict) -> None:
        metrics.SOCKETS_OPEN.labels(endpoint=self.metrics_endpoint).inc()
        self._gauge_counted = True
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message: dict) -> None:
        if self._gauge_counted:
            self._gauge_counted = False
            metrics.SOCKETS_OPEN.labels(endpoint=self.metrics_endpoint).dec()
        await super().websocket_disconnect(message)


class GuardedSocketMixin:
    """No exception escapes a consumer's connect or receive path.

    An exception that left the consumer would end the ASGI app: the client sees 1006 and
    ``disconnect`` never runs (a hub subscription, an auth timer or a flush left behind).
    Here it is logged, the client gets an ``error`` frame (code ``error``) and close 1011
    (``CloseCode.INTERNAL_ERROR``); the server's ``websocket.disconnect`` that follows runs
    the consumer's cleanup as for any close. Put it first among the bases.
    """

    async def websocket_connect(self, message: dict) -> None:
        try:
            await super().websocket_connect(message)  # type: ignore[misc]
        except StopConsumer:
            raise
        except Exception:
            await self._internal_error("connect")

    async def websocket_receive(self, message: dict) -> None:
        try:
            await super().websocket_receive(message)  # type: ignore[misc]
        except StopConsumer:
            raise
        except Exception:
            await self._internal_error("receive")

    async def _internal_error(self, where: str) -> None:
        logger.exception("unexpected error in %s of %s", where, type(self).__name__)
        err = LiveOpsError("internal error; the server closed this socket (reconnect)")
        try:
            await self.send(text_data=error_frame(err, close=CloseCode.INTERNAL_ERROR))  # type: ignore[attr-defined]
            await self.close(code=CloseCode.INTERNAL_ERROR)  # type: ignore[attr-defined]
        except Exception:  # the socket is already gone: the disconnect still cleans up
            logger.debug("could not report the error", exc_info=True)
