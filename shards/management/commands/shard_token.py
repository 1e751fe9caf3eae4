"""``manage.py shard_token KEY [--name N] [--region R]``: create or rotate a shard's token."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import InvalidInput
from shards.models import Shard
from shards.services import shard_create, shard_token_rotate


class Command(BaseCommand):
    help = "Create a shard (if KEY is new) or rotate its token; prints the token once."

    def add_arguments(self, parser):
        parser.add_argument("key")
        parser.add_argument("--name", default="", help="display name (new shards)")
        parser.add_argument("--region", default="", help="region (new shards)")

    def handle(self, *args, key: str, name: str, region: str, **options):
        shard = Shard.objects.filter(key=key).first()
        try:
            if shard is None:
                shard, token = shard_create(key=key, name=name or key, region=region)
                verb = "created"
            else:
                token = shard_token_rotate(shard=shard)
                verb = "rotated (the old token no longer works)"
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"shard {shard.key}: token {verb}. It is shown only once; store it now.")
        self.stdout.write(token)
