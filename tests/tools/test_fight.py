"""``manage.py fight`` against a live server (uvicorn + real worker and beat), and its bad input."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from bosses.models import BossEncounter
from bosses.services import boss_go_live
from core import keys
from core.redis import get_redis
from shards.models import Shard
from tests.browser.support import start_uvicorn
from tests.support import processes

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(celery_stack):
    proc, base = start_uvicorn(**processes.SIMULATOR_ENV)  # the simulator's players use ?player=
    try:
        yield base
    finally:
        proc.stop()


def test_fight_against_a_live_server_ends_with_verify_boss_ok(server, capsys):
    boss = BossEncounter.objects.create(name="Fight", slug="fight-boss", max_hp=10**12, attacks_per_second=20)
    boss_go_live(boss=boss)

    call_command(
        "fight",
        "--url",
        server,
        "--boss",
        "fight-boss",
        "--shards",
        "2",
        "--players",
        "6",
        "--attack-rate",
        "10",
        "--sdk",
        "2",
        "--sdk-rate",
        "5000",
        "--duration",
        "3",
        "--json",
    )
    report = json.loads(capsys.readouterr().out)

    assert report["verify_ok"] is True, report["verify"]["problems"]
    assert report["players_connected"] == 6 and report["servers_connected"] == 2
    assert report["attacks_acked"] > 0 and report["sdk_deltas"] > 0
    # every acknowledged attack and delta is in the authority, exactly once
    assert report["settled"] is True
    assert report["damage_accepted_during_fight"] == report["damage_acked"]
    assert report["damage_accounted"] is True
    assert report["states"] > 0 and report["final_version_seen"] > 1
    assert report["freshness_samples"] > 0 and report["freshness_p99_ms"] > 0
    # the authority's own figures agree with what the fight reports
    applied = int(get_redis().hget(keys.BossKeys(boss.pk).state, "applied"))
    assert applied == report["damage_acked"] == report["verify"]["applied"]
    # the simulator's shards are real shards (hosted ones and token-authenticated game servers)
    assert set(Shard.objects.filter(key__startswith="fight-").values_list("key", flat=True)) == {
        "fight-h1",
        "fight-h2",
        "fight-s1",
        "fight-s2",
    }


def test_fight_human_output_has_progress_and_verification(server, capsys):
    boss = BossEncounter.objects.create(name="Fight 2", slug="fight-two", max_hp=10**12)
    boss_go_live(boss=boss)

    call_command(
        "fight",
        "--url",
        server,
        "--boss",
        "fight-two",
        "--shards",
        "1",
        "--players",
        "3",
        "--sdk",
        "1",
        "--sdk-rate",
        "2000",
        "--duration",
        "2",
    )
    captured = capsys.readouterr()
    assert "[" in captured.err and "hp " in captured.err  # the progress bar
    assert "attacks:" in captured.out and "freshness" in captured.out
    assert "verify_boss: OK" in captured.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--url", "nope", "--boss", "x"], "--url must look like"),
        (
            ["--url", "http://127.0.0.1:1", "--boss", "x", "--players", "0", "--sdk", "0"],
            "nothing to simulate",
        ),
        (["--url", "http://127.0.0.1:1", "--boss", "x", "--duration", "0"], "--duration"),
        (["--url", "http://127.0.0.1:1", "--boss", "x", "--shards", "0"], "--shards"),
        (["--url", "http://127.0.0.1:1", "--boss", "x", "--attack-rate", "500"], "--attack-rate"),
        (["--url", "http://127.0.0.1:1", "--boss", "no-such-boss"], "no boss with slug"),
    ],
)
def test_fight_refuses_bad_input_before_touching_anything(argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("fight", *argv)
    assert not Shard.objects.exists()


def test_fight_refuses_a_boss_that_is_not_live():
    BossEncounter.objects.create(name="Draft", slug="draft-boss", max_hp=1000)
    with pytest.raises(CommandError, match="not live"):
        call_command("fight", "--url", "http://127.0.0.1:1", "--boss", "draft-boss")
    assert not Shard.objects.exists()


def test_many_players_arriving_at_once_lose_no_acknowledged_attack(server, capsys):
    """Dozens of players' first attacks reach a hosted shard together: every acked attack is applied."""
    boss = BossEncounter.objects.create(name="Rush", slug="rush", max_hp=10**12, attacks_per_second=50)
    boss_go_live(boss=boss)

    call_command(
        "fight",
        "--url",
        server,
        "--boss",
        "rush",
        "--shards",
        "2",
        "--players",
        "60",
        "--attack-rate",
        "40",
        "--sdk",
        "0",
        "--duration",
        "2",
        "--json",
    )
    report = json.loads(capsys.readouterr().out)

    assert report["verify_ok"] is True, report["verify"]["problems"]
    assert report["attacks_acked"] > 60
    assert report["damage_accepted_during_fight"] == report["damage_acked"]
    # one session per hosted shard in this one server process: no orphaned epochs to fence
    sessions = get_redis().hkeys(keys.BossKeys(boss.pk).seq)
    assert sorted(s.rsplit(":", 1)[0] for s in sessions) == ["fight-h1", "fight-h2"], sessions
