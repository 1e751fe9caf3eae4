"""WebSocket routes (consumers live in bosses/ and shards/; protocol in docs/protocol.md)."""

from django.urls import path, re_path

from transport.consumers.gateway import ShardGatewayConsumer
from transport.consumers.ops import OpsBossConsumer, OpsOverviewConsumer
from transport.consumers.state import BossStateConsumer

websocket_urlpatterns: list = [
    path("ws/ops/", OpsOverviewConsumer.as_asgi()),
    path("ws/ops/bosses/<slug:slug>/", OpsBossConsumer.as_asgi()),
    re_path(r"^ws/bosses/(?P<slug>[^/]{1,200})/$", BossStateConsumer.as_asgi()),
    re_path(r"^ws/shards/(?P<shard>[^/]{1,200})/$", ShardGatewayConsumer.as_asgi()),
]
