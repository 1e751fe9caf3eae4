"""WebSocket routes (consumers live in bosses/ and shards/)."""
from django.urls import path

from bosses.ops_consumers import OpsBossConsumer

websocket_urlpatterns: list = [
    path("ws/ops/bosses/<slug:slug>/", OpsBossConsumer.as_asgi()),
]
