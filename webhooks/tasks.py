"""Celery tasks of the webhooks (queue ``webhooks``): thin wrappers over webhooks/services.py."""

from __future__ import annotations

from celery import shared_task

from webhooks.conf import DELIVER_TASK, SWEEP_TASK
from webhooks.services import deliveries_sweep, delivery_attempt, parked_events_replay


@shared_task(name=DELIVER_TASK, ignore_result=True)
def deliver(*, delivery_id: int) -> str:
    """One attempt of one delivery (the row records its outcome; retries enqueue themselves)."""
    return delivery_attempt(delivery_id=delivery_id).outcome


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep() -> int:
    """Create the deliveries of fight events parked during a database outage, then
    re-enqueue deliveries stuck pending past their next attempt (beat)."""
    return parked_events_replay() + deliveries_sweep()
