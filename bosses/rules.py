"""What a boss may change in each status: the one rule the admin and the API both apply.

A draft is configuration only: every designer field may change. Going live seeds the
authority in Redis from some of them, and from then until a reset the authority, the ledger
and the fight's records depend on those values, so they are frozen:

- ``slug``: the authority, the sockets, the API paths and the webhook events name the fight by it;
- ``max_hp``: the ledger counts from it (``hp = max_hp - applied``, docs/authority.md);
- ``phases``: the authority's phase thresholds were seeded from it, and the fight report and a
  restore from the archive recompute the phase of every HP from it;
- ``tick_interval_ms``: the authority's minimum tick interval was seeded from it, and a restore
  would seed the new value into a fight that ran with the old one;
- ``starts_at``: the fight has started.

What the running fight reads afresh may still change while it is live or paused: the name,
the crash policy and heartbeat timing (read at each crash scan; every settlement records the
policy it used), the hosted players' damage range and attack rate, whether guests may fight,
the reward table (read at the victory) and ``ends_at`` (read by the schedule every second).

Once the fight ended (defeated or expired) its configuration is the record of that fight (the
report, the results and the granted rewards were made from it): only the name may change.
Reset the boss to a draft to set up the next fight.

Documented in docs/authority.md ("What a boss may change"); tests/bosses/test_rules.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bosses.models import BossEncounter, BossStatus

# Every field a designer sets (admin form, API); the platform writes the rest (PLATFORM_FIELDS).
DESIGNER_FIELDS = (
    "name",
    "slug",
    "max_hp",
    "phases",
    "tick_interval_ms",
    "crash_policy",
    "heartbeat_interval_ms",
    "heartbeat_timeout_ms",
    "min_damage",
    "max_damage",
    "attacks_per_second",
    "allow_guests",
    "reward_table",
    "starts_at",
    "ends_at",
)
# Written by the lifecycle services, the tick and the sagas; never by a designer (``template``:
# by the services that start a boss from a template or apply one, docs/liveops.md).
PLATFORM_FIELDS = ("status", "fight", "defeated_at", "final_hp", "final_version", "template")

# Frozen from go-live until a reset, and why (what depends on the value).
FROZEN_WHILE_RUNNING: Mapping[str, str] = {
    "slug": "the authority, the sockets, the API and the webhook events name the fight by it",
    "max_hp": "the authority's ledger counts from it",
    "phases": "the authority's phase thresholds were seeded from it",
    "tick_interval_ms": "the authority's minimum tick interval was seeded from it",
    "starts_at": "the fight has started",
}
EDITABLE_WHEN_ENDED = ("name",)

RUNNING = (BossStatus.LIVE, BossStatus.PAUSED)
ENDED = (BossStatus.DEFEATED, BossStatus.EXPIRED)


def boss_editable_fields(*, status: str) -> tuple[str, ...]:
    """The designer fields a boss in ``status`` may change (in DESIGNER_FIELDS order)."""
    status = BossStatus(status)
    if status in RUNNING:
        return tuple(f for f in DESIGNER_FIELDS if f not in FROZEN_WHILE_RUNNING)
    if status in ENDED:
        return EDITABLE_WHEN_ENDED
    return DESIGNER_FIELDS


def boss_changed_fields(*, boss: BossEncounter, changes: Mapping[str, Any]) -> list[str]:
    """The fields of ``changes`` (field -> new value) whose value differs from the boss's:
    setting a field to the value it holds changes nothing, so no status refuses it."""
    return [f for f, value in changes.items() if getattr(boss, f) != value]


def boss_edit_refusal(*, boss: BossEncounter, changes: Mapping[str, Any]) -> tuple[str, str] | None:
    """``None`` when the boss, in its status, may take ``changes`` (field -> new value);
    otherwise ``(field, reason)``: the first refused field and a sentence for humans.

    Only designer fields are judged here (the callers refuse unknown fields themselves).
    """
    editable = boss_editable_fields(status=boss.status)
    refused = [
        f
        for f in boss_changed_fields(boss=boss, changes=changes)
        if f in DESIGNER_FIELDS and f not in editable
    ]
    if not refused:
        return None
    if boss.status in ENDED:
        return refused[0], (
            f"{boss.slug} is {boss.status}: its fight has ended and only "
            f"{', '.join(EDITABLE_WHEN_ENDED)} can change; {', '.join(refused)} stay as the fight "
            "had them (reset it to a draft to set up the next fight)"
        )
    why = "; ".join(f"{f}: {FROZEN_WHILE_RUNNING[f]}" for f in refused)
    return refused[0], (
        f"{boss.slug} is {boss.status}: {', '.join(refused)} cannot change while the fight runs "
        f"({why}); reset it to a draft (not while live) to change them"
    )
