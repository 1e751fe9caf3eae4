"""Fight events for listeners outside the fight (webhooks): sent after the fact, never awaited.

``fight_event`` is sent with ``boss_id``, ``slug``, ``fight``,
``event`` (one of :data:`FIGHT_EVENTS`), ``key`` (stable per occurrence: a saga or a tick that
runs again sends the same key, so a listener can drop the repeat) and ``payload`` (a JSON-able
dict). It may be sent inside a database transaction (a saga step): a listener that writes or
enqueues must do it on commit. A listener must not do network I/O: the tick pass sends
``phase`` and must never wait on a game's endpoint (docs/webhooks.md).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)
fight_event = Signal()

WENT_LIVE = "boss.went_live"
PHASE = "boss.phase"
DEFEATED = "boss.defeated"
EXPIRED = "boss.expired"
CRASH_SETTLED = "crash.settled"
REWARDS_GRANTED = "rewards.granted"
# A recurring schedule's next spawn is near (its notice_minutes before; docs/liveops.md).
SPAWN_UPCOMING = "boss.spawn_upcoming"
FIGHT_EVENTS = (WENT_LIVE, PHASE, DEFEATED, EXPIRED, CRASH_SETTLED, REWARDS_GRANTED, SPAWN_UPCOMING)


def fight_event_send(
    *,
    boss_id: int,
    slug: str,
    fight: int,
    event: str,
    payload: dict[str, Any],
    occurrence: str = "",
    key: str | None = None,
) -> None:
    """Send one fight event to every listener (errors of a listener are logged, never raised).

    The key is ``<event>:<boss id>:<fight>`` plus ``:<occurrence>`` for events that happen
    more than once a fight (a phase, a crash settlement); ``key`` overrides it.
    """
    key = key or ":".join(str(part) for part in (event, boss_id, fight, occurrence) if part != "")
    for _receiver, result in fight_event.send_robust(
        sender=None, boss_id=boss_id, slug=slug, fight=fight, event=event, key=key, payload=payload
    ):
        if isinstance(result, Exception):
            logger.error("fight event %s listener failed: %r", key, result)
