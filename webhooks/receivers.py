"""The fight_event listener: delivery rows and their tasks on commit, never a network call
to a game's endpoint (a tick pass sends ``boss.phase`` and must not wait on one)."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from bosses.signals import fight_event
from shards.services import DATABASE_DOWN
from webhooks.services import deliveries_create_or_park


@receiver(fight_event, dispatch_uid="webhooks.fight_event")
def fight_event_received(
    *, boss_id: int, slug: str, fight: int, event: str, key: str, payload: dict[str, Any], **_: Any
) -> None:
    """Create the deliveries of this event once the sender's transaction commits (a saga step
    that rolls back sends nothing); a rolled-back repeat and a committed one share ``key``.
    While the database is unreachable the event is parked in Redis and the sweep creates
    them later (webhooks.services.deliveries_create_or_park)."""
    create = partial(
        deliveries_create_or_park,
        boss_id=boss_id,
        slug=slug,
        fight=fight,
        event=event,
        key=key,
        payload=dict(payload),
    )
    try:
        transaction.on_commit(create, robust=True)
    except DATABASE_DOWN:  # no connection, so no transaction to wait for: park it now
        create()
