"""Publishing live messages: one Redis PUBLISH per message, serialized once.

Every ASGI process subscribes once per boss it serves and hands the same bytes to each of
its sockets (see docs/fanout.md), so the cost here is O(messages), never O(viewers).
"""

from __future__ import annotations

from typing import Any

from core import keys
from core.redis import get_redis
from core.wire import encode


def messages_publish(*, boss_id: int, messages: list[dict[str, Any]]) -> None:
    """Publish ``messages`` in order on the boss's state channel (one round trip)."""
    if not messages:
        return
    pipe = get_redis().pipeline(transaction=False)
    channel = keys.state_channel(boss_id)
    for message in messages:
        pipe.publish(channel, encode(message))
    pipe.execute()
