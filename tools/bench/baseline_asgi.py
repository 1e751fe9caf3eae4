"""ASGI app of the fan-out baselines: a stock Channels consumer in a group (tools/bench/fanout.py).

``BENCH_LAYER=core`` uses ``channels_redis.core.RedisChannelLayer``, ``pubsub`` uses
``channels_redis.pubsub.RedisPubSubChannelLayer``. The consumer is what a stock Channels app
does: ``group_add`` on connect, ``group_discard`` on disconnect, and a handler that sends the
event's text (already serialized by the publisher, so the baselines are not charged for
JSON encoding either).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
settings.CHANNEL_LAYERS = {
    "default": {
        "BACKEND": LAYERS[os.environ.get("BENCH_LAYER", "core")],
        "CONFIG": {"hosts": [settings.CHANNELS_URL]},
    }
}

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class GroupViewer(AsyncWebsocketConsumer):
    """Joins ``bench_<group>`` and forwards every ``state.message`` event's text."""

    async def connect(self) -> None:
        self.group = f"bench_{self.scope['url_route']['kwargs']['group']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def state_message(self, event: dict) -> None:
        await self.send(text_data=event["text"])


async def _http(scope, receive, send):  # readiness probe
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": _http,
        "websocket": URLRouter([path("ws/bench/<str:group>/", GroupViewer.as_asgi())]),
    }
)
