"""The kit's shared test vectors (conformance/vectors/*.json), written from the platform's code.

``python -m conformance.vectors`` writes them; ``python -m conformance.vectors --check`` exits 1
when a file differs from what the platform's code gives now (CI runs it, through
``make conformance``).

* ``tickets.json``: ``sign`` cases (the inputs of a signer and the exact ticket expected: any
  SDK's signer must produce it byte for byte), each accepted by the platform's verifier
  (``core.tickets.player_ticket_verify``) with the expected player, expiry and shard; and
  ``verify`` cases (changed, expired, foreign tickets) with the verifier's verdict.
* ``webhooks.json``: bodies signed the way the platform's sender signs them
  (``webhooks.services`` puts ``webhook_signature_header`` in ``Webhook-Signature``) with the
  verdict every verifier must reach: ``ok`` or the error code (``webhook_malformed``,
  ``webhook_stale``, ``webhook_bad_signature``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import LiveOpsError
from core.tickets import player_ticket_verify
from worldboss_sdk.tickets import player_ticket_sign
from worldboss_sdk.webhooks import WebhookVerificationError, webhook_verify

VECTORS = Path(__file__).resolve().parent / "vectors"
SECRET = "conformance-secret-of-thirty-two-bytes"
OTHER = "another-secret-of-at-least-thirty-two!"
NOW = 1_750_000_000

SIGN_CASES: list[dict[str, Any]] = [
    {"player": "hero-42", "ttl_s": 3600},
    {"player": "a", "ttl_s": 1},
    {"player": "p.1:x@y_z-w", "ttl_s": 86_400, "shard": "eu-1"},
    {"player": "hero-42", "ttl_s": 600, "boss": "ragnaros"},
    {"player": "Z" * 64, "ttl_s": 120, "shard": "web-1", "boss": "dragon_2"},
    {"player": "hero-42", "ttl_s": 3600, "key_id": "game-2", "secret": OTHER},
]


def _signed(case: dict[str, Any]) -> dict[str, Any]:
    inputs = {"secret": SECRET, "key_id": "game-1", "now_s": NOW, **case}
    ticket = player_ticket_sign(
        secret=inputs["secret"],
        key_id=inputs["key_id"],
        player=inputs["player"],
        ttl_s=inputs["ttl_s"],
        shard=inputs.get("shard"),
        boss=inputs.get("boss"),
        now_s=inputs["now_s"],
    )
    checked = player_ticket_verify(
        ticket=ticket,
        keys={inputs["key_id"]: inputs["secret"].encode()},
        now_s=NOW + 0.5,
        shard=inputs.get("shard"),
        boss=inputs.get("boss"),
    )
    expected = (inputs["player"], NOW + inputs["ttl_s"], inputs.get("shard"))
    if (checked.player, checked.expires_at_s, checked.shard) != expected:
        raise SystemExit(f"the platform's verifier disagrees on {inputs}: {checked}")
    return {**inputs, "ticket": ticket}


def _verdict(ticket: str, *, now_s: float, shard: str | None = None, boss: str | None = None) -> str:
    try:
        player_ticket_verify(
            ticket=ticket, keys={"game-1": SECRET.encode()}, now_s=now_s, shard=shard, boss=boss
        )
    except LiveOpsError as err:
        return str(err.code)
    return "ok"


def tickets() -> dict[str, Any]:
    signed = [_signed(case) for case in SIGN_CASES]
    base = signed[0]["ticket"]
    scoped = signed[2]["ticket"]
    flipped = base[:-1] + ("A" if base[-1] != "A" else "B")
    verify = [
        {"name": "valid", "ticket": base, "now_s": NOW + 10},
        {"name": "expired", "ticket": base, "now_s": NOW + 3600},
        {"name": "issued in the future", "ticket": base, "now_s": NOW - 120},
        {"name": "signature changed", "ticket": flipped, "now_s": NOW + 10},
        {"name": "unknown key id", "ticket": signed[5]["ticket"], "now_s": NOW + 10},
        {"name": "other shard", "ticket": scoped, "now_s": NOW + 10, "shard": "eu-2"},
        {"name": "right shard", "ticket": scoped, "now_s": NOW + 10, "shard": "eu-1"},
        {"name": "not a ticket", "ticket": "v2.game-1.e30.e30", "now_s": NOW},
    ]
    for case in verify:
        case["expect"] = _verdict(
            case["ticket"], now_s=case["now_s"], shard=case.get("shard"), boss=case.get("boss")
        )
    return {
        "about": "player tickets: sign[] must be reproduced exactly; verify[] is the platform's verdict "
        "(keys: game-1 = secret of sign[0])",
        "sign": signed,
        "verify": verify,
    }


def _webhook(name: str, body: str, *, secrets: list[str], now_s: int, **change: Any) -> dict[str, Any]:
    from webhooks.services import webhook_signature_header  # the sender's own (needs Django set up)

    timestamp = str(change.pop("timestamp", NOW))
    signature = webhook_signature_header(secrets=secrets, timestamp=timestamp, body=body.encode())
    case: dict[str, Any] = {
        "name": name,
        "secret": SECRET,
        "body": body,
        "timestamp": timestamp,
        "signature": change.pop("signature", signature),
        "tolerance_s": 300,
        "now_s": now_s,
    }
    if "changed_body" in change:  # signed over ``body``, delivered with another
        case["body"] = change.pop("changed_body")
    case.update(change)
    try:
        webhook_verify(
            secret=case["secret"],
            body=case["body"].encode(),
            timestamp=case["timestamp"],
            signature=case["signature"],
            tolerance_s=case["tolerance_s"],
            now_s=case["now_s"],
        )
        case["expect"] = "ok"
    except WebhookVerificationError as err:
        case["expect"] = err.code
    return case


def webhooks() -> dict[str, Any]:
    from webhooks.services import webhook_signature_header

    body = json.dumps(
        {"event": "boss.defeated", "boss": "ragnaros", "data": {"hp": 0}}, separators=(",", ":")
    )
    good = webhook_signature_header(secrets=[SECRET], timestamp=str(NOW), body=body.encode())
    cases = [
        _webhook("valid", body, secrets=[SECRET], now_s=NOW + 5),
        _webhook("valid, unicode body", '{"name":"Ragnarös 🔥"}', secrets=[SECRET], now_s=NOW),
        _webhook("rotation: two values, the second ours", body, secrets=[OTHER, SECRET], now_s=NOW),
        _webhook(
            "comma-separated values", body, secrets=[OTHER], now_s=NOW, signature=f"v1={'0' * 64},{good}"
        ),
        _webhook(
            "a later scheme's value is ignored", body, secrets=[SECRET], now_s=NOW, signature=f"v2=abc {good}"
        ),
        _webhook("wrong secret", body, secrets=[OTHER], now_s=NOW),
        _webhook("body changed", body, secrets=[SECRET], now_s=NOW, changed_body=body.replace("0", "1")),
        _webhook("stale", body, secrets=[SECRET], now_s=NOW + 301),
        _webhook("from the future", body, secrets=[SECRET], now_s=NOW - 301),
        _webhook("timestamp not digits", body, secrets=[SECRET], now_s=NOW, timestamp="17e8"),
        _webhook("no v1 value", body, secrets=[SECRET], now_s=NOW, signature="v2=abc"),
        _webhook(
            "uppercase hex", body, secrets=[SECRET], now_s=NOW, signature=good.upper().replace("V1", "v1")
        ),
        _webhook("nine values", body, secrets=[SECRET] * 9, now_s=NOW),
        _webhook("body not JSON", "not json", secrets=[SECRET], now_s=NOW),
        _webhook("body a JSON array", "[1,2]", secrets=[SECRET], now_s=NOW),
    ]
    return {
        "about": "webhook signatures: every verifier must reach `expect` (ok or the error code)",
        "cases": cases,
    }


def rendered() -> dict[str, str]:
    return {
        name: json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        for name, data in {"tickets.json": tickets(), "webhooks.json": webhooks()}.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a vector file is not current")
    opts = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = VECTORS / name
        if opts.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"conformance vectors not current: {', '.join(stale)} (run python -m conformance.vectors)")
        return 1
    return 0


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
    django.setup()
    sys.exit(main())
