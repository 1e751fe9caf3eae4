"""Publishing live messages: one Redis PUBLISH per message, serialized once.

Every ASGI process subscribes once per boss it serves and hands the same bytes to each of
its sockets (see docs/fanout.md), so the cost here is O(messages), never O(viewers). On a
Redis Cluster the messages go out with SPUBLISH on the boss's sharded channel, to the master
that owns the boss's slot (docs/topologies.md).
"""

from __future__ import annotations

import logging
from typing import Any

from core import keys
from core.clients import execute_pipelined
from core.redis import get_redis, sharded_pubsub
from core.wire import encode

logger = logging.getLogger(__name__)


def messages_publish(*, boss_id: int, messages: list[dict[str, Any]]) -> None:
    """Publish ``messages`` in order on the boss's state channel (one round trip)."""
    messages_publish_many(batches={boss_id: messages})


def messages_publish_many(*, batches: dict[int, list[dict[str, Any]]]) -> None:
    """Publish each boss's messages, in order, on its channel: one pipeline for all bosses
    (the tick pass publishes every boss it applied in one round trip; one per master on a
    cluster). Raises when nothing could be published (the authority is unreachable); on a
    cluster with one master down, the other masters' bosses are still published."""
    if not any(batches.values()):
        return
    sharded = sharded_pubsub()
    command = "SPUBLISH" if sharded else "PUBLISH"
    commands = []
    for boss_id, messages in batches.items():
        channel = keys.sharded_state_channel(boss_id) if sharded else keys.state_channel(boss_id)
        commands += [(channel, (command, channel, encode(message))) for message in messages]
    replies = execute_pipelined(get_redis(), commands)
    errors = [reply for reply in replies if isinstance(reply, Exception)]
    if errors and len(errors) == len(replies):
        raise errors[0]
    if errors:
        logger.warning("%d of %d state messages not published: %r", len(errors), len(replies), errors[0])
