"""examples/game_backend.py runs against a live server: key, schedule, go live, results,
the reward feed and idempotent claims (a second run claims nothing twice)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import processes

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def run_example(api, key: str, *args: str, env_key: bool = False) -> dict:
    argv = [sys.executable, "examples/game_backend.py", api.base, *([] if env_key else [key]), *args]
    env = processes.subprocess_env(WORLDBOSS_API_KEY=key) if env_key else processes.subprocess_env()
    out = subprocess.run(argv, cwd=processes.ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_example_backend_first_hour(api, make_key, make_boss, tmp_path):
    from bosses.models import BossEncounter, BossStatus, RewardGrant

    won = make_boss(slug="old-fight", status=BossStatus.DEFEATED)
    grants = [
        RewardGrant.objects.create(boss=won, fight=1, player=f"p{i}", tier="elite", rank=i, damage=100 - i)
        for i in range(1, 4)
    ]
    RewardGrant.objects.filter(pk=grants[2].pk).update(claim_id="someone-else", claimed_at=won.created_at)
    key = make_key("read", "operate", "rewards")
    cursor = tmp_path / "cursor"

    first = run_example(api, key, "--slug", "frost-giant", "--max-hp", "90000", "--cursor-file", str(cursor))
    assert first == {
        "boss": "frost-giant",
        "status": "live",
        "grants": 3,
        "claimed": 2,
        "already_claimed": 1,
        "cursor": grants[-1].pk,
    }
    boss = BossEncounter.objects.get(slug="frost-giant")
    assert boss.status == BossStatus.LIVE and boss.ends_at is not None and boss.max_hp == 90_000
    for grant in grants[:2]:
        grant.refresh_from_db()
        assert grant.claim_id == f"grant-{grant.pk}" and grant.claimed_at is not None

    # again, from the start of the feed and with the key from the environment: the same
    # claim ids are answered as before, nothing is claimed twice
    claimed_at = {g.pk: g.claimed_at for g in RewardGrant.objects.all()}
    again = run_example(api, key, "--slug", "frost-giant", env_key=True)
    assert again["claimed"] == 2 and again["already_claimed"] == 1
    assert {g.pk: g.claimed_at for g in RewardGrant.objects.all()} == claimed_at
    # the cursor file makes a third run start after the last grant it saw
    assert run_example(api, key, "--slug", "frost-giant", "--cursor-file", str(cursor))["grants"] == 0
