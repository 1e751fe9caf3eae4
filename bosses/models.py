"""Designer configuration and fight history. The live truth is in Redis (core/authority.py)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from core.limits import MAX_DAMAGE_PER_ATTACK, MAX_HP


class BossStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    PAUSED = "paused", "Paused"
    DEFEATED = "defeated", "Defeated"
    EXPIRED = "expired", "Expired"


class CrashPolicy(models.TextChoices):
    FAIR = "fair", "Fair: apply a crashed shard's last known buffer"
    HARSH = "harsh", "Harsh: discard a crashed shard's last known buffer"


class RewardTable(models.Model):
    """What a won fight grants: ordered tiers, a minimum contribution, an optional last-hit bonus.

    A boss without a table grants the default tiers (``core.rewards.DEFAULT_TABLE``: rank 1
    ``champion``, ranks 2-10 ``elite``, every other contributor ``participant``). docs/rewards.md.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, default="")
    min_damage = models.PositiveBigIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Minimum total damage of a player to get anything (tiers and the last-hit bonus).",
    )
    last_hit_payload = models.JSONField(
        null=True,
        blank=True,
        help_text="What the player credited with the killing blow gets on top (tier last_hit); "
        "empty: no last-hit reward.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # Viewing (and previewing) needs view_rewardtable; changing a table needs this.
        permissions = [("design_rewards", "Can design reward tables")]

    def __str__(self) -> str:
        return self.name


class RewardTierKind(models.TextChoices):
    RANK = "rank", "Rank from..to"
    PERCENTILE = "percentile", "Top X % of contributors"
    DAMAGE = "damage", "Damage at least"


class RewardTier(models.Model):
    """One tier of a table; the first matching tier (by ``position``) is the player's reward."""

    table = models.ForeignKey(RewardTable, on_delete=models.CASCADE, related_name="tiers")
    position = models.PositiveIntegerField(default=0, help_text="Tiers are tried in this order.")
    name = models.CharField(max_length=16, help_text="The tier code the game sees.")
    kind = models.CharField(max_length=12, choices=RewardTierKind.choices)
    rank_from = models.PositiveIntegerField(null=True, blank=True)
    rank_to = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no upper bound.")
    percent = models.DecimalField(
        max_digits=6, decimal_places=3, null=True, blank=True, help_text="Top X %, X in (0, 100]."
    )
    damage_min = models.PositiveBigIntegerField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="What the game grants (a JSON object).")

    class Meta:
        ordering = ["table", "position", "id"]

    def __str__(self) -> str:
        return f"{self.table_id}#{self.position} {self.name} ({self.kind})"


class FightSettings(models.Model):
    """What a fight runs with: shared by a boss and the templates fights start from.

    A boss's settings are the next fight's (or the running one's); each fight's own are frozen
    in its :class:`FightConfig` when it goes live (docs/liveops.md).
    """

    max_hp = models.BigIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_HP)],
        help_text=f"Whole hit points, 1 to {MAX_HP:,}.",
    )
    tick_interval_ms = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(100), MaxValueValidator(10_000)],
        help_text="Sync tick interval in milliseconds (the beat runs every 100 ms).",
    )
    crash_policy = models.CharField(max_length=8, choices=CrashPolicy.choices, default=CrashPolicy.FAIR)
    heartbeat_interval_ms = models.PositiveIntegerField(
        default=1_000, validators=[MinValueValidator(100), MaxValueValidator(60_000)]
    )
    heartbeat_timeout_ms = models.PositiveIntegerField(
        default=5_000,
        validators=[MinValueValidator(300), MaxValueValidator(600_000)],
        help_text="A shard silent this long is declared crashed and fenced.",
    )
    phases = models.CharField(
        max_length=400,
        blank=True,
        default="75:Enraged, 50:Frenzy, 25:Last stand",
        help_text="HP-percent thresholds with names, strictly decreasing inside (0, 100), each optionally with "
        'the damage it takes and its regeneration, e.g. "75:Enraged takes 75% regen 50/s, 50:Frenzy" '
        '(docs/liveops.md, "Mechanics").',
    )
    min_damage = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1), MaxValueValidator(MAX_DAMAGE_PER_ATTACK)]
    )
    max_damage = models.PositiveIntegerField(
        default=150, validators=[MinValueValidator(1), MaxValueValidator(MAX_DAMAGE_PER_ATTACK)]
    )
    attacks_per_second = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Rate limit per platform-hosted player.",
    )
    allow_guests = models.BooleanField(
        default=True,
        help_text="Players without a game ticket or an account may fight (opaque guest ids; docs/security.md).",
    )

    class Meta:
        abstract = True


# The settings a template gives a boss and a fight's frozen configuration records, in form order
# (``reward_table`` is a foreign key on each model: its related name differs).
SETTINGS_FIELDS = (
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
)


class BossTemplate(FightSettings):
    """A boss's settings kept to start fights from: a new boss, a recurring schedule's fights
    (docs/liveops.md). Editing a template changes only fights started from it afterwards."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True, default="")
    reward_table = models.ForeignKey(
        RewardTable,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="templates",
        help_text="What a victory grants; empty: the default tiers (docs/rewards.md).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class BossEncounter(FightSettings):
    """A World Boss as a designer configures it; status mirrors the authority in Redis."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=BossStatus.choices, default=BossStatus.DRAFT)
    fight = models.PositiveIntegerField(
        default=1, help_text="Fight number; a reset starts the next one with a clean authority."
    )
    authority_gen = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Restores of this fight's authority from the SQL archive (docs/durability.md).",
    )
    incarnation = models.CharField(
        max_length=32,
        blank=True,
        default="",
        editable=False,
        help_text="Identity of this fight's authority in Redis, set when it goes live; "
        "an authority with another one belongs to another database or fight.",
    )
    template = models.ForeignKey(
        BossTemplate,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="bosses",
        help_text="The template this boss's settings came from (a schedule applies it to each fight).",
    )
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Goes live at this time.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Expires (enrage) at this time.")
    reward_table = models.ForeignKey(
        RewardTable,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="bosses",
        help_text="What a victory grants; empty: the default tiers (docs/rewards.md).",
    )
    defeated_at = models.DateTimeField(null=True, blank=True)
    final_version = models.BigIntegerField(null=True, blank=True)
    final_hp = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # Staff is not a role: running a fight needs this (admin actions, the ops dashboard's
        # pause/resume/end); watching it needs view_bossencounter (docs/dashboard.md).
        permissions = [("operate_boss", "Can operate a fight: go live, pause, resume, end, reset")]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class FightConfig(models.Model):
    """The configuration one fight ran with, frozen when it went live (docs/liveops.md).

    ``config`` holds every setting (:data:`SETTINGS_FIELDS`, the reward table with its tiers),
    the schedule and the phase thresholds in HP. Results, timelines, reports and
    ``verify_boss`` read it, never the boss's row: editing the boss or its template later
    changes no past fight. The settings a running fight reads afresh (crash policy, heartbeats,
    damage range, guests, ``ends_at``) are recorded again when they change during the fight; the
    reward table once more when the victory saga reads it.
    """

    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="fight_configs")
    fight = models.PositiveIntegerField()
    template = models.ForeignKey(
        BossTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="fight_configs"
    )
    config = models.JSONField(default=dict)
    frozen_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["boss", "fight"]
        constraints = [models.UniqueConstraint(fields=["boss", "fight"], name="uniq_fight_config")]

    def __str__(self) -> str:
        return f"{self.boss_id} fight {self.fight} config"


class BossEvent(models.Model):
    """One archived event-log entry (a tick or a status change), copied from the Redis stream."""

    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="events")
    fight = models.PositiveIntegerField()
    version = models.BigIntegerField()
    kind = models.CharField(max_length=16)
    status = models.CharField(max_length=16)
    hp = models.BigIntegerField()
    applied = models.BigIntegerField(default=0)
    overkill = models.BigIntegerField(default=0)
    # What the phase's damage-taken multiplier removed from this tick's drained total, and the
    # multiplier (basis points) it applied (docs/liveops.md, "Mechanics").
    mitigated = models.BigIntegerField(default=0)
    damage_taken_bp = models.PositiveIntegerField(default=10_000)
    # Regeneration before this tick's damage: the HP healed, the phase's rate (HP per second),
    # the ms it was credited for and the thousandths of HP carried into it (docs/liveops.md).
    healed = models.BigIntegerField(default=0)
    regen_per_s = models.PositiveIntegerField(default=0)
    regen_elapsed_ms = models.BigIntegerField(default=0)
    regen_carry = models.PositiveIntegerField(default=0)
    deltas = models.JSONField(default=dict, blank=True)
    # What a restore from the archive needs (docs/durability.md): each drained session's last
    # accepted seq, and the per-player damage this tick moved to the players' totals.
    seqs = models.JSONField(default=dict, blank=True)
    players = models.JSONField(default=dict, blank=True)
    ts_ms = models.BigIntegerField()

    class Meta:
        ordering = ["boss", "fight", "version"]
        constraints = [
            models.UniqueConstraint(fields=["boss", "fight", "version"], name="uniq_event_version"),
        ]

    def __str__(self) -> str:
        return f"{self.boss_id} fight {self.fight} v{self.version} {self.kind}"


class SagaKind(models.TextChoices):
    VICTORY = "victory", "Victory"
    CRASH = "crash", "Crash"
    RESTORE = "restore", "Restore"


# Why a crash saga ended its session (``detail["reason"]``, docs/sagas.md) and what a screen
# calls the saga: only ``crashed`` (or no reason recorded) is a crash; a session that left
# with ``bye``, was replaced by a new ``auth`` or was retired by an operator is not.
CRASH_REASON = "crashed"
END_KINDS = ("left", "replaced", "retired")


def session_end_kind(reason: str | None) -> str:
    """``crash`` for a crash saga that recorded a crash (or no reason), else its reason
    (``left``, ``replaced``, ``retired``): how the dashboard, report and API name it."""
    return reason if reason in END_KINDS else SagaKind.CRASH


class SagaStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class SagaRun(models.Model):
    """A saga's durable record: its idempotency key, the steps done, amounts and timings."""

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=SagaKind.choices)
    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="sagas")
    fight = models.PositiveIntegerField()
    shard_key = models.CharField(max_length=64, blank=True)
    epoch = models.BigIntegerField(null=True, blank=True)
    policy = models.CharField(max_length=8, blank=True)
    amount = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=SagaStatus.choices, default=SagaStatus.RUNNING)
    steps = models.JSONField(default=list, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return self.key


class ContributionKind(models.TextChoices):
    SHARD = "shard", "Shard"
    PLAYER = "player", "Player"


class Contribution(models.Model):
    """Accepted damage of one shard or one player in a won fight (written by the victory saga).

    ``rank`` orders the fight's contributors of the same kind (1 = most damage; ties by name),
    so the top-N leaderboard is ``kind=player, rank <= N``.
    """

    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="contributions")
    fight = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=ContributionKind.choices)
    name = models.CharField(max_length=64)
    damage = models.BigIntegerField()
    rank = models.PositiveIntegerField()

    class Meta:
        ordering = ["boss", "fight", "kind", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["boss", "fight", "kind", "name"], name="uniq_contribution"),
        ]
        # The saga streams players by rank (rewards) and reads the top N (leaderboard).
        indexes = [models.Index(fields=["boss", "fight", "kind", "rank"], name="contribution_rank_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.damage}"


class RewardGrant(models.Model):
    """One reward of one player for one won fight; the unique constraint makes it idempotent.

    A player gets at most one tier of the table, plus the ``last_hit`` extra when credited with
    the killing blow: unique per (boss, fight, player, tier).
    """

    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="rewards")
    fight = models.PositiveIntegerField()
    player = models.CharField(max_length=64)
    tier = models.CharField(max_length=16)
    rank = models.PositiveIntegerField()
    damage = models.BigIntegerField()
    saga = models.ForeignKey(
        SagaRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="rewards"
    )
    # What the game grants for this tier (the reward table's payload, copied at grant time).
    payload = models.JSONField(default=dict, blank=True)
    granted_at = models.DateTimeField(auto_now_add=True)
    # The game's claim (the backend API, docs/integration.md): set once, by the first claim;
    # a retried claim with the same claim_id gets the same answer, another claim_id a refusal.
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["boss", "fight", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["boss", "fight", "player", "tier"], name="uniq_reward_per_player_tier"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.player}: {self.tier} ({self.boss_id}/{self.fight})"


class SpawnSchedule(models.Model):
    """A boss that comes back: an RFC 5545 recurrence rule on a time zone's wall clock, each
    occurrence a new fight of the boss (docs/liveops.md, "Recurring spawns")."""

    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="spawn_schedules")
    name = models.CharField(max_length=120, blank=True, default="")
    template = models.ForeignKey(
        BossTemplate,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="spawn_schedules",
        help_text="Applied to the boss before each fight; empty: the boss's own settings.",
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Paris.")
    rule = models.CharField(
        max_length=400,
        help_text='RFC 5545 RRULE without DTSTART, e.g. "FREQ=DAILY" or "FREQ=WEEKLY;BYDAY=SA,SU".',
    )
    start_date = models.DateField(help_text="The first day (local) the rule may spawn on.")
    start_time = models.TimeField(help_text="Local wall time of each spawn (unless the rule sets BYHOUR...).")
    duration_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Each fight expires (enrages) this many seconds after its spawn; empty: runs until defeated.",
    )
    blackout_dates = models.JSONField(
        default=list, blank=True, help_text='Local dates with no spawn, e.g. ["2026-12-24", "2026-12-31"].'
    )
    notice_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MaxValueValidator(10_080)],
        help_text="The boss.spawn_upcoming webhook goes out this many minutes before each spawn (0: none).",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["boss", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.boss_id}: {self.rule}"


class OccurrenceStatus(models.TextChoices):
    CLAIMED = "claimed", "Claimed (spawning)"
    SPAWNED = "spawned", "Spawned"
    SKIPPED = "skipped", "Skipped"


class SpawnOccurrence(models.Model):
    """One occurrence of a schedule: the unique (schedule, at) key makes its spawn happen once,
    whatever the number of beats; the lease lets one worker at a time carry it out, and another
    finish it once a killed worker's lease ran out."""

    schedule = models.ForeignKey(SpawnSchedule, on_delete=models.CASCADE, related_name="occurrences")
    boss = models.ForeignKey(BossEncounter, on_delete=models.CASCADE, related_name="spawn_occurrences")
    at = models.DateTimeField(help_text="The spawn's instant.")
    fight = models.PositiveIntegerField(null=True, blank=True, help_text="The fight this occurrence starts.")
    status = models.CharField(
        max_length=8, choices=OccurrenceStatus.choices, default=OccurrenceStatus.CLAIMED
    )
    detail = models.CharField(max_length=200, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=32, blank=True, default="", help_text="Who holds the lease.")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    spawned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        constraints = [models.UniqueConstraint(fields=["schedule", "at"], name="uniq_spawn_occurrence")]
        indexes = [models.Index(fields=["status", "lease_until"], name="spawn_occurrence_lease_idx")]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.at.isoformat()} ({self.status})"
