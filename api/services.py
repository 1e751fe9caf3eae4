"""Writes of the backend API: keys, boss drafts and schedules, reward claims."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from api.models import ApiKey, ApiScope
from audit.services import audit_record
from bosses.models import BossEncounter, BossStatus, RewardGrant
from bosses.services import boss_validate_config
from core.errors import AlreadyClaimed, InvalidInput, InvalidTransition, NotFound, Unauthorized, UnknownBoss

# A key is "wbk_" + the public prefix + "_" + the secret: 32 random bytes, URL-safe base64.
KEY_MARK = "wbk_"
PREFIX_CHARS = 8
TOKEN_BYTES = 32
# last_used_at is written at most this often per key: a busy key must not write on every call.
LAST_USED_EVERY_S = 60
# Fields of a boss the API may set on a draft (the rest belongs to the platform).
BOSS_EDITABLE_FIELDS = (
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
    "starts_at",
    "ends_at",
)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def apikey_scopes_parse(*, scopes: Iterable[str] | str) -> str:
    """Validated, sorted, comma-separated scopes; :class:`InvalidInput` on an unknown or empty set."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    wanted = {s.strip() for s in items if s.strip()}
    unknown = wanted - set(ApiScope.values)
    if unknown:
        raise InvalidInput(
            f"unknown scope(s) {', '.join(sorted(unknown))}; choose from {', '.join(ApiScope.values)}",
            field="scopes",
        )
    if not wanted:
        raise InvalidInput("a key needs at least one scope", field="scopes")
    return ",".join(sorted(wanted))


def apikey_issue(*, apikey: ApiKey) -> str:
    """Give an unsaved or existing key a fresh secret (prefix and hash); returns the key, once."""
    for _ in range(5):
        prefix = secrets.token_hex(PREFIX_CHARS // 2)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    token = secrets.token_urlsafe(TOKEN_BYTES)
    apikey.prefix = prefix
    apikey.key_hash = _hash(token)
    return f"{KEY_MARK}{prefix}_{token}"


def apikey_create(
    *, name: str, scopes: Iterable[str] | str, actor: str = "system", request: Any = None
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret (shown once, never stored). Audited."""
    if not name.strip():
        raise InvalidInput("a key needs a name", field="name")
    apikey = ApiKey(name=name.strip()[:120], scopes=apikey_scopes_parse(scopes=scopes))
    key = apikey_issue(apikey=apikey)
    apikey.save()
    audit_record(
        actor=actor,
        action="apikey.create",
        target=f"apikey/{apikey.prefix}",
        detail={"name": apikey.name, "scopes": apikey.scopes},
        request=request,
    )
    return apikey, key


def apikey_revoke(*, apikey: ApiKey, actor: str = "system", request: Any = None) -> ApiKey:
    """Revoke a key (idempotent): every later call with it gets 401. Audited."""
    if apikey.revoked_at is None:
        apikey.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=apikey.pk, revoked_at__isnull=True).update(revoked_at=apikey.revoked_at)
        audit_record(actor=actor, action="apikey.revoke", target=f"apikey/{apikey.prefix}", request=request)
    return apikey


def apikey_authenticate(*, key: str, now: datetime | None = None) -> ApiKey:
    """The live key behind ``key`` or :class:`Unauthorized` (unknown, malformed or revoked).

    The row is found by its public prefix; the secret's hash is compared in constant time.
    """
    mark, _, rest = key.partition("_")
    prefix, _, token = rest.partition("_")
    if f"{mark}_" != KEY_MARK or len(prefix) != PREFIX_CHARS or not token:
        raise Unauthorized("malformed API key (expected wbk_<prefix>_<secret>)")
    apikey = ApiKey.objects.filter(prefix=prefix).first()
    # Hash and compare even for an unknown prefix, so timing tells nothing about prefixes.
    expected = apikey.key_hash if apikey is not None else "0" * 64
    if not hmac.compare_digest(_hash(token), expected) or apikey is None:
        raise Unauthorized("unknown API key")
    if apikey.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    now = now or timezone.now()
    if apikey.last_used_at is None or now - apikey.last_used_at > timedelta(seconds=LAST_USED_EVERY_S):
        apikey.last_used_at = now
        ApiKey.objects.filter(pk=apikey.pk).update(last_used_at=now)
    return apikey


# --- bosses --------------------------------------------------------------------------------


def _validation_error(exc: ValidationError) -> InvalidInput:
    errors = getattr(exc, "error_dict", None) or {"__all__": exc.error_list}
    field, messages = next(iter(errors.items()))
    text = " ".join(m for e in messages for m in e.messages)
    return InvalidInput(f"{field}: {text}" if field != "__all__" else text, field=field)


def _boss_check(boss: BossEncounter) -> None:
    try:
        boss.full_clean()
    except ValidationError as exc:
        raise _validation_error(exc) from None
    boss_validate_config(boss=boss)


def boss_draft_create(*, fields: Mapping[str, Any]) -> BossEncounter:
    """Create a draft boss from ``fields`` (model validation and the cross-field checks);
    nothing is written on a refusal."""
    unknown = set(fields) - set(BOSS_EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    boss = BossEncounter(**fields, status=BossStatus.DRAFT)
    _boss_check(boss)
    try:
        with transaction.atomic():
            boss.save()
    except IntegrityError:  # a concurrent create of the same slug
        raise InvalidInput(f"a boss with slug {boss.slug!r} exists", field="slug") from None
    return boss


def boss_draft_update(*, slug: str, fields: Mapping[str, Any]) -> BossEncounter:
    """Change a draft boss (refused with :class:`InvalidTransition` once it is not a draft).

    The row is locked while it is checked and saved, so a go-live in between cannot slip
    a half-checked configuration into a live fight; nothing is written on a refusal.
    """
    unknown = set(fields) - set(BOSS_EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    with transaction.atomic():
        boss = BossEncounter.objects.select_for_update().filter(slug=slug).first()
        if boss is None:
            raise UnknownBoss(f"no boss with slug {slug!r}")
        if boss.status != BossStatus.DRAFT:
            raise InvalidTransition(f"{boss.slug} is {boss.status}; only a draft can be edited")
        for name, value in fields.items():
            setattr(boss, name, value)
        _boss_check(boss)
        try:
            with transaction.atomic():
                boss.save()
        except IntegrityError:
            raise InvalidInput(f"a boss with slug {boss.slug!r} exists", field="slug") from None
    return boss


def boss_schedule_set(
    *, boss: BossEncounter, starts_at: datetime | None, ends_at: datetime | None
) -> BossEncounter:
    """Set when the boss goes live and when it expires (the beat applies it every second).

    ``starts_at`` only matters for a draft; ``ends_at`` may also move while the fight runs.
    An ended fight has no schedule left to change.
    """
    if boss.status in (BossStatus.DEFEATED, BossStatus.EXPIRED):
        raise InvalidTransition(f"{boss.slug} is {boss.status}; its fight has ended (reset it first)")
    if boss.status != BossStatus.DRAFT and starts_at != boss.starts_at:
        raise InvalidTransition(f"{boss.slug} is {boss.status}; only a draft's start can be scheduled")
    boss.starts_at, boss.ends_at = starts_at, ends_at
    _boss_check(boss)
    BossEncounter.objects.filter(pk=boss.pk).update(
        starts_at=starts_at, ends_at=ends_at, updated_at=timezone.now()
    )
    return boss


# --- rewards -------------------------------------------------------------------------------


def reward_claim(*, grant_id: int, claim_id: str, now: datetime | None = None) -> tuple[RewardGrant, bool]:
    """Claim a reward grant once: returns ``(grant, first)``.

    One conditional UPDATE (``WHERE claimed_at IS NULL``) decides between concurrent claims,
    on SQLite and PostgreSQL alike; a retry with the winning ``claim_id`` gets the same grant
    back (``first`` False), any other ``claim_id`` :class:`AlreadyClaimed`.
    """
    if not claim_id or len(claim_id) > 64:
        raise InvalidInput("claim_id must be 1 to 64 characters", field="claim_id")
    now = now or timezone.now()
    won = RewardGrant.objects.filter(pk=grant_id, claimed_at__isnull=True).update(
        claimed_at=now, claim_id=claim_id
    )
    grant = RewardGrant.objects.select_related("boss").filter(pk=grant_id).first()
    if grant is None:
        raise NotFound(f"no reward grant {grant_id}")
    if not won and grant.claim_id != claim_id:
        raise AlreadyClaimed(
            f"reward grant {grant_id} was already claimed with another claim_id", claim_id=claim_id
        )
    return grant, bool(won)
