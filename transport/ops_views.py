"""Operator dashboard and player page: thin views over ops selectors and boss services.

Pause / resume / end go through the same services as the admin (bosses.services); each
needs an explicit confirmation (a POST with ``confirm=yes`` and the CSRF token). Without
it the view shows a confirmation page, so an operator never acts by a stray click.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from audit.services import audit_record_request
from bosses import services
from bosses.ops_selectors import ops_overview_live, ops_snapshot
from bosses.selectors import boss_get, boss_get_visible
from core.errors import AuthorityUnavailable, Forbidden, LiveOpsError, UnknownBoss
from core.redis import REDIS_DOWN
from shards.models import Shard, ShardKind, ShardStatus
from transport.permissions import (
    OPERATE_BOSS,
    WATCH_BOSS,
    can_operate,
    can_watch,
    guest_cookie_set,
    guest_id_from_cookie,
    guest_id_new,
)
from transport.views import render_page, sees_drafts
from worldboss_sdk.protocol import Status

# action -> (service, button label, what it does, which statuses allow it)
OPS_ACTIONS = {
    "pause": (
        services.boss_pause,
        "Pause",
        "Freeze HP: shards keep buffering, deltas are refused until you resume.",
        (Status.LIVE,),
    ),
    "resume": (services.boss_resume, "Resume", "Accept and apply damage again.", (Status.PAUSED,)),
    "end": (
        services.boss_end,
        "End fight",
        "Expire the boss undefeated (it enrages and leaves). This cannot be undone; "
        "only a reset in the admin starts a new fight.",
        (Status.LIVE, Status.PAUSED),
    ),
}
CONFIRM_VALUE = "yes"


def _not_found(request: HttpRequest, exc: UnknownBoss) -> HttpResponse:
    return render_page(request, "ops/not_found.html", {"error": exc}, status=404)


def _authority_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    err = AuthorityUnavailable(
        f"Redis (the live authority) is unreachable: {exc}. Nothing was changed; reload when it is back."
    )
    return render_page(
        request, "ops/not_found.html", {"error": err, "title": "Authority unavailable"}, status=503
    )


def _requires(check, permission: str):
    """Staff login (else the admin's login page), then ``check(user)`` (else HTTP 403 with
    code ``forbidden`` naming the permission; nothing runs)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not check(request.user):
                err = Forbidden(f"this needs the {permission} permission; ask an administrator")
                if request.method == "POST":  # a refused attempt to change something is audited
                    audit_record_request(
                        request=request,
                        action=f"ops.{view.__name__}",
                        target=request.path[:200],
                        outcome=err.code,
                    )
                return render_page(
                    request, "ops/not_found.html", {"error": err, "title": "Forbidden"}, status=403
                )
            return view(request, *args, **kwargs)

        return staff_member_required(wrapped)

    return decorator


@_requires(can_watch, WATCH_BOSS)
def ops_index(request: HttpRequest) -> HttpResponse:
    """``/ops/``: every boss at a glance (status, HP, DPS, shard health, tick lag), kept live
    by one ``/ws/ops/`` socket that gets one summary of all bosses per second."""
    try:
        overview = ops_overview_live()
    except REDIS_DOWN as exc:
        return _authority_down(request, exc)
    for row in overview["bosses"]:
        row["hp_pct"] = round(100 * row["hp"] / row["max_hp"], 2) if row["max_hp"] else 0
    return render_page(
        request, "ops/index.html", {"rows": overview["bosses"], "overview": overview, "ws_path": "/ws/ops/"}
    )


@_requires(can_watch, WATCH_BOSS)
def ops_boss(request: HttpRequest, slug: str) -> HttpResponse:
    """``/ops/bosses/<slug>/``: the live fight dashboard (filled by /ws/ops/bosses/<slug>/)."""
    try:
        boss = boss_get(slug=slug)
    except UnknownBoss as exc:
        return _not_found(request, exc)
    try:
        snapshot = ops_snapshot(boss=boss, with_series=True)
    except REDIS_DOWN as exc:
        return _authority_down(request, exc)
    # ``allowed`` goes to the page too: its JS greys the buttons out as pushed states arrive
    actions = [
        {
            "name": name,
            "label": label,
            "help": help_text,
            "allowed": " ".join(allowed),
            "enabled": snapshot["state"]["status"] in allowed,
        }
        for name, (_, label, help_text, allowed) in OPS_ACTIONS.items()
    ]
    return render_page(
        request,
        "ops/boss.html",
        {
            "boss": boss,
            "snapshot": snapshot,
            "actions": actions,
            "ws_path": f"/ws/ops/bosses/{boss.slug}/",
        },
    )


@_requires(can_operate, OPERATE_BOSS)
@require_http_methods(["GET", "POST"])
def ops_boss_action(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    """Confirm (GET, or POST without ``confirm``) then run pause / resume / end (POST)."""
    try:
        boss = boss_get(slug=slug)
    except UnknownBoss as exc:
        return _not_found(request, exc)
    if action not in OPS_ACTIONS:
        return render_page(
            request,
            "ops/confirm.html",
            {
                "boss": boss,
                "action": action,
                "error": f"unknown action {action!r}: use one of {', '.join(OPS_ACTIONS)}",
            },
            status=404,
        )
    service, label, help_text, _ = OPS_ACTIONS[action]
    dashboard = reverse("ops-boss", kwargs={"slug": boss.slug})
    if request.method == "GET" or request.POST.get("confirm") != CONFIRM_VALUE:
        return render_page(
            request,
            "ops/confirm.html",
            {
                "boss": boss,
                "action": action,
                "label": label,
                "help": help_text,
                "confirm_value": CONFIRM_VALUE,
            },
        )
    target = f"boss/{boss.slug}"
    try:
        state = service(boss=boss)
    except LiveOpsError as exc:
        audit_record_request(request=request, action=f"boss.{action}", target=target, outcome=exc.code)
        messages.error(request, f"Could not {label.lower()} {boss.name}: {exc} [{exc.code}]")
        return redirect(dashboard)
    audit_record_request(
        request=request, action=f"boss.{action}", target=target, detail={"version": state.version}
    )
    messages.success(request, f"{label}: {boss.name} is now {state.status} (version {state.version}).")
    return redirect(dashboard)


def play(request: HttpRequest, slug: str) -> HttpResponse:
    """``/play/<slug>/?shard=<key>``: the player page, on a hosted shard.

    Who plays (docs/security.md, "Player identity"): a signed-in user as ``user:<pk>``; a
    visitor, where the boss allows guests, as the guest id of a signed cookie issued here
    when the page needs one (no session row is written); else the page asks to sign in.
    """
    try:
        boss = boss_get_visible(slug=slug, drafts=sees_drafts(request))
    except UnknownBoss as exc:
        return render_page(request, "play/not_found.html", {"error": exc}, status=404)
    shards = list(
        Shard.objects.filter(kind=ShardKind.HOSTED).exclude(status=ShardStatus.RETIRED).order_by("key")
    )
    shard_key = request.GET.get("shard", "")
    shard = next((s for s in shards if s.key == shard_key), None)
    if shard is None:
        error = f"Unknown shard {shard_key!r}." if shard_key else ""
        return render_page(
            request,
            "play/choose_shard.html",
            {"boss": boss, "shards": shards, "error": error},
            status=404 if shard_key else 200,
        )
    guest_id = new_guest = None
    if request.user.is_authenticated:
        identity = "user"
    elif boss.allow_guests:
        identity = "guest"
        guest_id = guest_id_from_cookie(request.COOKIES.get(settings.GUEST_COOKIE_NAME))
        if guest_id is None:
            guest_id = new_guest = guest_id_new()  # the identity the gateway rate-limits and credits
    else:
        identity = None
    config = {
        "boss": boss.slug,
        "name": boss.name,
        "shard": shard.key,
        "max_hp": boss.max_hp,
        "min_damage": boss.min_damage,
        "max_damage": boss.max_damage,
        # a click takes the least a hit deals off the bar: the ack's real damage only lowers it
        "predicted_damage": boss.min_damage,
        "attacks_per_second": boss.attacks_per_second,
        "state_path": f"/ws/bosses/{boss.slug}/",
        "shard_path": f"/ws/shards/{shard.key}/",
        "snapshot_url": reverse("boss-state-api", kwargs={"slug": boss.slug}),
        # null: a visitor on a boss that admits no guests watches, and is asked to sign in
        "identity": identity,
        "login_url": f"{settings.LOGIN_URL}?next={quote(request.get_full_path())}",
    }
    response = render_page(request, "play/boss.html", {"boss": boss, "shard": shard, "config": config})
    if new_guest is not None:
        guest_cookie_set(response, guest_id=new_guest)
    return response
