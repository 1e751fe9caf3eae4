"""API keys of game backends (docs/api.md): stored hashed, scoped, revocable."""

from __future__ import annotations

from django.db import models


class ApiScope(models.TextChoices):
    READ = "read", "Read: bosses, fights, results, leaderboards, timelines"
    OPERATE = "operate", "Operate: create and edit drafts, schedule, go live, pause, resume, end"
    REWARDS = "rewards", "Rewards: read reward grants and claim them"


class ApiKey(models.Model):
    """One game backend's key. Only the SHA-256 of the secret is stored; ``prefix`` (public,
    part of the key itself) finds the row, and the hash is compared in constant time."""

    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    # Comma-separated ApiScope values, sorted (e.g. "operate,read").
    scopes = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name", "prefix"]
        verbose_name = "API key"
        permissions = [("manage_apikey", "Can create and revoke backend API keys")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def scope_set(self) -> frozenset[str]:
        """The key's scopes as a set."""
        return frozenset(s for s in self.scopes.split(",") if s)

    @property
    def actor(self) -> str:
        """The audit trail's name of this key's caller."""
        return f"apikey:{self.prefix}"
