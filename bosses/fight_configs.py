"""Reads of a fight's configuration: what a boss would freeze now, what a fight froze, and
what changed since (docs/liveops.md, "Templates and frozen configurations").

A fight's configuration is frozen into its :class:`~bosses.models.FightConfig` when it goes
live; every reader of a fight's history (results, timeline, report, ``verify_boss``) goes
through :func:`fight_config_get`, never through the boss's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bosses.models import SETTINGS_FIELDS, BossEncounter, BossTemplate, FightConfig, RewardTable
from core.errors import InvalidInput
from core.phases import FULL_DAMAGE_BP, parse_phases, phase_damage_taken, phase_regen, phase_thresholds

# The keys of a configuration a diff compares (the rest, like the thresholds, follow from them).
DIFF_KEYS = (*SETTINGS_FIELDS, "template", "starts_at", "ends_at")


def reward_table_record(*, table: RewardTable | None) -> dict[str, Any] | None:
    """The reward table as a fight keeps it: its id, name, minimum, last-hit payload and tiers."""
    if table is None:
        return None
    return {
        "id": table.pk,
        "name": table.name,
        "min_damage": table.min_damage,
        "last_hit_payload": table.last_hit_payload,
        "tiers": [
            {
                "name": t.name,
                "kind": t.kind,
                "rank_from": t.rank_from,
                "rank_to": t.rank_to,
                "percent": None if t.percent is None else str(t.percent),
                "damage_min": t.damage_min,
                "payload": t.payload,
            }
            for t in table.tiers.order_by("position", "id")
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _thresholds(phases: str, max_hp: int) -> list[list[Any]]:
    try:
        return [[hp, name] for hp, name in phase_thresholds(parse_phases(phases), max_hp)]
    except InvalidInput:  # a damaged draft: the configuration is still shown
        return []


def settings_config(*, source: BossEncounter | BossTemplate) -> dict[str, Any]:
    """The settings of a boss or a template (:data:`~bosses.models.SETTINGS_FIELDS`), the
    reward table expanded, plus the phase thresholds in HP."""
    out: dict[str, Any] = {f: getattr(source, f) for f in SETTINGS_FIELDS if f != "reward_table"}
    out["reward_table"] = reward_table_record(table=source.reward_table)
    out["thresholds"] = _thresholds(source.phases, source.max_hp)
    return out


def boss_config_current(*, boss: BossEncounter) -> dict[str, Any]:
    """What the boss would freeze if its fight went live now."""
    return {
        **settings_config(source=boss),
        "name": boss.name,
        "slug": boss.slug,
        "template": boss.template.slug if boss.template_id and boss.template else None,
        "starts_at": _iso(boss.starts_at),
        "ends_at": _iso(boss.ends_at),
    }


@dataclass(frozen=True)
class FightSetup:
    """A fight's configuration and where it came from: ``frozen`` False for a fight that has
    not gone live yet (the boss's current settings) or one from before configurations were
    kept."""

    fight: int
    frozen: bool
    frozen_at: datetime | None
    config: dict[str, Any]

    @property
    def max_hp(self) -> int:
        return int(self.config["max_hp"])

    @property
    def thresholds(self) -> list[tuple[int, str]]:
        return [(int(hp), str(name)) for hp, name in self.config.get("thresholds", [])]

    @property
    def damage_taken(self) -> list[int]:
        """Every phase's damage-taken multiplier (basis points), the opening phase first, from
        the frozen phases text (full damage everywhere if it no longer parses)."""
        try:
            return phase_damage_taken(str(self.config.get("phases") or ""))
        except InvalidInput:
            return [FULL_DAMAGE_BP] * (len(self.thresholds) + 1)

    @property
    def regen(self) -> list[int]:
        """Every phase's regeneration (HP per second), the opening phase first, from the frozen
        phases text (none if it no longer parses)."""
        try:
            return phase_regen(str(self.config.get("phases") or ""))
        except InvalidInput:
            return [0] * (len(self.thresholds) + 1)


def fight_config_get(*, boss: BossEncounter, fight: int) -> FightSetup:
    """The configuration ``fight`` of ``boss`` ran (or runs) with."""
    row = FightConfig.objects.filter(boss=boss, fight=fight).first()
    if row is not None:
        return FightSetup(fight=fight, frozen=True, frozen_at=row.frozen_at, config=row.config)
    return FightSetup(fight=fight, frozen=False, frozen_at=None, config=boss_config_current(boss=boss))


def fight_configs_of(*, boss: BossEncounter) -> list[FightConfig]:
    """Every frozen configuration of the boss, latest fight first."""
    return list(FightConfig.objects.filter(boss=boss).order_by("-fight"))


@dataclass(frozen=True)
class ConfigChange:
    """One setting that differs between two configurations."""

    field: str
    before: Any
    after: Any


def config_diff(*, before: dict[str, Any], after: dict[str, Any]) -> list[ConfigChange]:
    """What changed from ``before`` to ``after`` (in :data:`DIFF_KEYS` order)."""
    return [
        ConfigChange(field=k, before=before.get(k), after=after.get(k))
        for k in DIFF_KEYS
        if before.get(k) != after.get(k)
    ]


def fight_config_diff(*, boss: BossEncounter, fight: int) -> list[ConfigChange]:
    """What changed between ``fight``'s frozen configuration and the boss's current one."""
    frozen = fight_config_get(boss=boss, fight=fight)
    return config_diff(before=frozen.config, after=boss_config_current(boss=boss))
