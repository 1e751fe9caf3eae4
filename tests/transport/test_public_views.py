"""What the public sees, through a live server: no draft boss (an unreleased event) on the
index, the state API or the player page, and no game server's shard on the shard list.
Staff who may watch fights see the drafts."""

from __future__ import annotations

import pytest

from tests.api.conftest import Browserless
from tests.support import processes

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(transactional_db):
    proc, port = processes.start_server()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def test_drafts_and_game_server_shards_are_not_public(server):
    from django.contrib.auth import get_user_model

    from bosses.models import BossEncounter
    from bosses.services import boss_go_live
    from shards.models import ShardStatus
    from shards.services import shard_create

    live = BossEncounter.objects.create(name="Released Wyrm", slug="wyrm", max_hp=1000)
    boss_go_live(boss=live)
    BossEncounter.objects.create(name="Secret Kraken", slug="kraken", max_hp=987_654)
    shard_create(key="play-1", name="Play 1", region="eu", kind="hosted")
    shard_create(key="gs-secret", name="Studio server")
    old, _ = shard_create(key="play-old", name="Old", kind="hosted")
    old.status = ShardStatus.RETIRED
    old.save()

    public = Browserless(server)
    index = public.call("GET", "/")
    assert index.status == 200 and "Released Wyrm" in index.body and "Kraken" not in index.body
    draft = public.call("GET", "/api/bosses/kraken/state")
    assert (draft.status, draft.body["code"]) == (404, "unknown_boss")
    assert "987654" not in str(draft.body) and "Kraken" not in str(draft.body)
    assert draft.body == public.call("GET", "/api/bosses/nothing/state").body | {
        "detail": "no boss with slug 'kraken'"
    }
    assert public.call("GET", "/play/kraken/?shard=play-1").status == 404
    state = public.call("GET", "/api/bosses/wyrm/state")
    assert state.status == 200
    assert state.body["shards"] == [{"key": "play-1", "name": "Play 1", "region": "eu", "status": "online"}]

    get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    staff = Browserless(server)
    assert staff.login("root", "pw-root").status == 302
    assert "Secret Kraken" in staff.call("GET", "/").body
    assert staff.call("GET", "/api/bosses/kraken/state").body["max_hp"] == 987_654
    assert staff.call("GET", "/play/kraken/?shard=play-1").status == 200
