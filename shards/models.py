"""Shards: game servers (or platform-hosted gateways) that buffer damage and push deltas."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

from worldboss_sdk.protocol import SHARD_KEY_PATTERN

SHARD_KEY_RE = SHARD_KEY_PATTERN  # \A...\Z: a trailing newline does not pass (Django's validator searches)


class ShardStatus(models.TextChoices):
    ONLINE = "online", "Online"
    CRASHED = "crashed", "Crashed"
    RETIRED = "retired", "Retired"


class ShardKind(models.TextChoices):
    """Who feeds a shard (docs/security.md, "Shard kinds"): never both."""

    HOSTED = "hosted", "Hosted (players connect to the platform)"
    GAME_SERVER = "game_server", "Game server (authenticates with its token)"


class Shard(models.Model):
    """A shard's identity. Its token is stored only as a SHA-256 hash (tokens are random)."""

    key = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(SHARD_KEY_RE, "Lowercase letters, digits, '-' and '_' (max 64).")],
    )
    name = models.CharField(max_length=120)
    region = models.CharField(max_length=32, blank=True, default="")
    status = models.CharField(max_length=16, choices=ShardStatus.choices, default=ShardStatus.ONLINE)
    # A game server's shard refuses players, a hosted one refuses tokens: a player attack on a
    # game server's key can neither open a session under it nor bump its epoch or status.
    kind = models.CharField(
        max_length=16,
        choices=ShardKind.choices,
        default=ShardKind.GAME_SERVER,
        help_text="Hosted: players attack through the platform. Game server: only its token connects.",
    )
    current_epoch = models.BigIntegerField(
        default=0, help_text="Last epoch handed out; each (re)connection gets the next one."
    )
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    token_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]
        # Issuing a token (add, rotate) and retiring need this, not only staff (bosses/admin.py).
        permissions = [("manage_shard", "Can create a shard, rotate its token and retire it")]

    def __str__(self) -> str:
        return self.key
