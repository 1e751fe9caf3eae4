"""What every consumer shares: one receive -> dispatch loop without a channel layer."""

from __future__ import annotations

from channels.exceptions import StopConsumer

from core import metrics


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
