"""Shards get a kind: hosted (players) or game_server (token). Existing rows become game
servers (a player could otherwise attack under a game server's key); hosted shards are marked
in the admin, and the demo's simulated ones by tools/simsetup.py (docs/security.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shards", "0002_manage_shard_permission")]

    operations = [
        migrations.AddField(
            model_name="shard",
            name="kind",
            field=models.CharField(
                choices=[
                    ("hosted", "Hosted (players connect to the platform)"),
                    ("game_server", "Game server (authenticates with its token)"),
                ],
                default="game_server",
                help_text="Hosted: players attack through the platform. Game server: only its token connects.",
                max_length=16,
            ),
        ),
    ]
