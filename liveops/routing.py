"""WebSocket routes (consumers live in bosses/ and shards/)."""
websocket_urlpatterns: list = []
