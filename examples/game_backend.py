"""A game backend's first hour against the platform's API (standard library + worldboss_sdk).

    python manage.py apikey_create --name my-game --scopes read,operate,rewards   # prints the key once
    WORLDBOSS_API_KEY=<key> python examples/game_backend.py http://127.0.0.1:8000 --slug frost-giant

or ``python examples/game_backend.py <base-url> <key> --slug ...``. It lists the bosses,
creates a draft boss, schedules its end, makes it go live, reads the fight's results, signs a
player ticket for the gateway (``?ticket=``), then drains the reward feed and claims every
new grant. Claims use ``claim_id = "grant-<id>"``: a claim retried after a lost answer (or
a second run) gets the same answer instead of a second reward (docs/integration.md).

The last line it prints is one JSON object (``boss``, ``status``, ``grants``, ``claimed``,
``already_claimed``, ``cursor``) for scripts that run it; the exit status is 0 on success.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from worldboss_sdk.tickets import player_ticket_sign


class ApiError(Exception):
    """A refusal of the API: ``status``, ``code`` (stable) and ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Api:
    """A tiny client of /api/v1/ (Bearer key, JSON in and out)."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}").get("error", {})
            raise ApiError(exc.code, error.get("code", "error"), error.get("detail", "")) from None


def first_hour(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """The walk-through: a boss from draft to live, its results, then the rewards."""
    bosses = api.call("GET", "/bosses?limit=10")
    print(f"{bosses['count']} boss(es) on the platform")

    try:
        boss = api.call("GET", f"/bosses/{args.slug}")
    except ApiError as exc:
        if exc.code != "unknown_boss":
            raise
        boss = api.call(
            "POST",
            "/bosses",
            {"name": args.name, "slug": args.slug, "max_hp": args.max_hp, "phases": "75:Enraged, 50:Frenzy"},
        )
        print(f"created draft {boss['slug']} ({boss['max_hp']:,} HP)")
    if boss["status"] == "draft":
        ends_at = datetime.now(UTC) + timedelta(minutes=args.minutes)
        api.call("PUT", f"/bosses/{args.slug}/schedule", {"starts_at": None, "ends_at": ends_at.isoformat()})
        boss = api.call("POST", f"/bosses/{args.slug}/go-live")
        print(f"{args.slug} is {boss['status']} until {ends_at:%H:%M:%S} UTC")

    results = api.call("GET", f"/bosses/{args.slug}/fights/{boss['fight']}/results")
    print(f"fight {results['fight']}: {results['status']}, hp {results['hp']}/{results['max_hp']}")

    # a player of this game joins the platform-hosted gateway with a signed ticket
    ticket = player_ticket_sign(
        secret=args.ticket_secret, key_id=args.ticket_key_id, player="hero-42", ttl_s=600
    )
    ws_base = args.base.replace("http", "ws", 1).rstrip("/")
    print(f"player socket: {ws_base}/ws/shards/<shard>/?ticket={ticket[:24]}...")

    cursor = (
        int(Path(args.cursor_file).read_text()) if args.cursor_file and Path(args.cursor_file).exists() else 0
    )
    grants = claimed = already = 0
    while True:
        page = api.call("GET", f"/rewards?after={cursor}&limit=100")
        for grant in page["items"]:
            grants += 1
            claim_id = f"grant-{grant['id']}"  # stable: a retry is recognised, not paid twice
            try:
                api.call("POST", f"/rewards/{grant['id']}/claim", {"claim_id": claim_id})
                # ... give the player grant["tier"] / grant["payload"] in the game here ...
                claimed += 1
            except ApiError as exc:
                if exc.code != "already_claimed":
                    raise
                already += 1  # claimed by another claim id (another backend instance)
        if not page["items"]:
            break
        cursor = page["next"]
        if args.cursor_file:
            Path(args.cursor_file).write_text(str(cursor))
    print(f"rewards: {grants} grant(s), {claimed} claimed now or before by us, {already} by someone else")
    return {
        "boss": args.slug,
        "status": boss["status"],
        "grants": grants,
        "claimed": claimed,
        "already_claimed": already,
        "cursor": cursor,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "base", nargs="?", default=os.environ.get("WORLDBOSS_API_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("key", nargs="?", default=os.environ.get("WORLDBOSS_API_KEY"))
    parser.add_argument("--slug", default="frost-giant")
    parser.add_argument("--name", default="Frost Giant")
    parser.add_argument("--max-hp", type=int, default=5_000_000)
    parser.add_argument("--minutes", type=int, default=60, help="the fight expires after this long")
    parser.add_argument("--cursor-file", help="keep the reward cursor here between runs")
    parser.add_argument("--ticket-key-id", default=os.environ.get("PLAYER_TICKET_KEY_ID", "k1"))
    parser.add_argument("--ticket-secret", default=os.environ.get("PLAYER_TICKET_SECRET", "change-me"))
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give the API key as the second argument or in WORLDBOSS_API_KEY")
    try:
        summary = first_hour(Api(args.base, args.key), args)
    except ApiError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
