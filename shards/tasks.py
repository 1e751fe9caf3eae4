"""Celery tasks of the shard layer (thin; imports inside the body)."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="shards.scan_crashed_shards", ignore_result=True)
def scan_crashed_shards() -> None:
    """Crash-detection saga: fence sessions silent past their boss's heartbeat timeout."""
    from shards.services import crashed_sessions_scan

    crashed_sessions_scan()
