"""``manage.py shard_token``: create or rotate, print once, old token stops working."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.errors import Unauthorized
from shards.models import Shard
from shards.services import shard_authenticate


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("shard_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_create_then_rotate(db):
    token, note = run("eu-west-1", "--name", "EU West", "--region", "eu")
    assert "created" in note and "shown only once" in note
    shard = Shard.objects.get(key="eu-west-1")
    assert (shard.name, shard.region) == ("EU West", "eu")
    assert token not in shard.token_hash and len(shard.token_hash) == 64
    assert shard_authenticate(shard_key="eu-west-1", token=token).pk == shard.pk

    new_token, note = run("eu-west-1")
    assert "rotated" in note and new_token != token
    assert shard_authenticate(shard_key="eu-west-1", token=new_token).pk == shard.pk
    with pytest.raises(Unauthorized):
        shard_authenticate(shard_key="eu-west-1", token=token)


@pytest.mark.parametrize("key", ["Bad Key", "UPPER", "", "x" * 65, "_leading", "a.b"])
def test_bad_keys_are_refused(db, key):
    with pytest.raises(CommandError, match="must be lowercase"):
        run(key)
    assert not Shard.objects.exists()


def test_other_shards_token_is_refused(db):
    token_a, _ = run("a")
    run("b")
    with pytest.raises(Unauthorized):
        shard_authenticate(shard_key="b", token=token_a)
