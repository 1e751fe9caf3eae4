"""Celery tasks: thin wrappers over services and sagas (task names are part of the beat schedule).

Tasks are the top of this app: services enqueue a saga by its task *name*
(``bosses.services.VICTORY_SAGA_TASK``), so nothing below imports this module.
"""

from __future__ import annotations

from celery import shared_task

from bosses.sagas.crash import crashed_sessions_scan
from bosses.sagas.victory import boss_victory_run, victory_sagas_resume
from bosses.services import VICTORY_SAGA_TASK, boss_schedules_apply, boss_tick_all, event_log_archive_all


@shared_task(name="bosses.tick_live_bosses", ignore_result=True)
def tick_live_bosses() -> None:
    """The sync tick: drain and apply every live boss (beat, every ~100 ms)."""
    boss_tick_all()


@shared_task(
    name=VICTORY_SAGA_TASK,
    ignore_result=True,
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=0.5,
    retry_backoff_max=10,
    max_retries=20,
)
def victory_saga(*, boss_id: int, fight: int) -> None:
    """Run or resume the victory saga of a defeated boss (exactly once per fight).

    An error that leaves the saga running is raised, so the task is retried; a saga that
    cannot complete ends ``failed`` (docs/sagas.md) and returns, so it is not retried.
    """
    boss_victory_run(boss_id=boss_id, fight=fight)


@shared_task(name="bosses.archive_event_logs", ignore_result=True)
def archive_event_logs() -> None:
    """Copy new event-log entries to SQL."""
    event_log_archive_all()


@shared_task(name="bosses.apply_schedules", ignore_result=True)
def apply_schedules() -> None:
    """Start scheduled bosses and expire those past their end time."""
    boss_schedules_apply()


@shared_task(name="bosses.resume_sagas", ignore_result=True)
def resume_sagas() -> None:
    """Re-enqueue victory sagas whose worker died mid-run (failed ones are left alone)."""
    victory_sagas_resume()


@shared_task(name="bosses.scan_crashed_sessions", ignore_result=True)
def scan_crashed_sessions() -> None:
    """Crash detection: fence sessions silent past their boss's heartbeat timeout, and resume
    crash sagas a dead process left running (Redis TIME is the clock)."""
    crashed_sessions_scan()
