"""Celery tasks: thin wrappers over bosses.services (imports inside the body)."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="bosses.tick_live_bosses", ignore_result=True)
def tick_live_bosses() -> None:
    """The sync tick: drain and apply every live boss (beat, every ~100 ms)."""
    from bosses.services import boss_tick_all

    boss_tick_all()


@shared_task(name="bosses.victory_saga", ignore_result=True, acks_late=True,
             autoretry_for=(Exception,), retry_backoff=0.5, retry_backoff_max=10, max_retries=20)
def victory_saga(*, boss_id: int, fight: int) -> None:
    """Run or resume the victory saga of a defeated boss (exactly once per fight)."""
    from bosses.services import boss_victory_run

    boss_victory_run(boss_id=boss_id, fight=fight)


@shared_task(name="bosses.archive_event_logs", ignore_result=True)
def archive_event_logs() -> None:
    """Copy new event-log entries to SQL."""
    from bosses.services import event_log_archive_all

    event_log_archive_all()


@shared_task(name="bosses.apply_schedules", ignore_result=True)
def apply_schedules() -> None:
    """Start scheduled bosses and expire those past their end time."""
    from bosses.services import boss_schedules_apply

    boss_schedules_apply()


@shared_task(name="bosses.resume_sagas", ignore_result=True)
def resume_sagas() -> None:
    """Re-enqueue victory sagas whose worker died mid-run (bosses.sagas.victory_sagas_resume)."""
    from bosses.sagas import victory_sagas_resume

    victory_sagas_resume()
