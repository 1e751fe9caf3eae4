"""Celery app and beat schedule.

Queues: ``ticks`` (the ~100 ms sync tick; latency-critical, never behind slow work),
``sagas`` (victory, crash detection, archiving) and ``webhooks`` (POSTs to game backends).
Every periodic entry has ``expires`` so a backlog after an outage is dropped, not piled up:
a tick drains everything, so the next one catches up.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from celery import Celery, signals
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.config import ConfigError, exit_on_config_error
from liveops.startup import authority_startup_check
from webhooks.conf import SWEEP_TASK, WEBHOOK_QUEUE, webhook_setting

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")

app = Celery("liveops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

TICK_QUEUE = "ticks"
SAGA_QUEUE = "sagas"


def _build_beat_schedule() -> dict:
    tick_s = settings.SYNC_TICK_INTERVAL_MS / 1000
    archive_s = settings.ARCHIVE_INTERVAL_MS / 1000
    crash_s = settings.CRASH_SCAN_INTERVAL_MS / 1000
    partitions = settings.TICK_PARTITIONS
    # One sync-tick entry per partition of the bosses' buckets: each is a task of its own, so
    # N tick workers run N partitions at once (bosses/services.py boss_tick_all).
    ticks = {
        ("sync-tick" if partitions == 1 else f"sync-tick-{p}"): {
            "task": "bosses.tick_live_bosses",
            "schedule": timedelta(seconds=tick_s),
            "kwargs": {"partition": p, "partitions": partitions},
            # A tick older than 5 intervals is useless: the next one drains it all.
            "options": {"queue": TICK_QUEUE, "expires": max(tick_s * 5, 0.5)},
        }
        for p in range(partitions)
    }
    return {
        **ticks,
        "archive-event-log": {
            "task": "bosses.archive_event_logs",
            "schedule": timedelta(seconds=archive_s),
            "options": {"queue": SAGA_QUEUE, "expires": archive_s * 2},
        },
        "scan-crashed-shards": {
            "task": "bosses.scan_crashed_sessions",
            "schedule": timedelta(seconds=crash_s),
            "options": {"queue": SAGA_QUEUE, "expires": crash_s * 2},
        },
        "resume-sagas": {
            "task": "bosses.resume_sagas",
            "schedule": timedelta(seconds=settings.SAGA_RESUME_INTERVAL_MS / 1000),
            "options": {"queue": SAGA_QUEUE, "expires": settings.SAGA_RESUME_INTERVAL_MS / 1000 * 2},
        },
        # Deliveries whose task was lost or whose worker died mid-attempt (docs/webhooks.md).
        "sweep-webhooks": {
            "task": SWEEP_TASK,
            "schedule": timedelta(seconds=webhook_setting("WEBHOOK_SWEEP_INTERVAL_MS") / 1000),
            "options": {
                "queue": WEBHOOK_QUEUE,
                "expires": webhook_setting("WEBHOOK_SWEEP_INTERVAL_MS") / 1000 * 2,
            },
        },
        "apply-schedules": {
            "task": "bosses.apply_schedules",
            "schedule": timedelta(seconds=1),
            "options": {"queue": SAGA_QUEUE, "expires": 2},
        },
        # Recurring spawns (docs/liveops.md): each occurrence once, whatever the number of beats.
        "apply-spawns": {
            "task": "bosses.apply_spawns",
            "schedule": timedelta(seconds=1),
            "options": {"queue": SAGA_QUEUE, "expires": 2},
        },
    }


app.conf.task_default_queue = SAGA_QUEUE
app.conf.task_routes = {
    "bosses.tick_live_bosses": {"queue": TICK_QUEUE},
    "bosses.*": {"queue": SAGA_QUEUE},
    # POSTs to game backends wait on the network: never in front of a tick or a saga.
    "webhooks.*": {"queue": WEBHOOK_QUEUE},
}
try:
    # The first read of the settings in every entry point (manage.py, uvicorn, the Celery
    # worker and beat all import this package first): a bad value ends the process here with
    # its one line and exit status 2 (core/config.py).
    app.conf.beat_schedule = _build_beat_schedule()
except (ConfigError, ImproperlyConfigured) as exc:
    exit_on_config_error(exc)


@signals.worker_init.connect
def _check_authority_at_worker_start(**_: Any) -> None:
    """The worker applies damage: check the authority persists it before taking tasks
    (a warning, or a refusal under AUTHORITY_REQUIRE_PERSISTENCE)."""
    authority_startup_check("worker")
