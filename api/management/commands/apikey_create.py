"""``manage.py apikey_create --name N --scopes read,operate``: prints the new key once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.services import apikey_create
from core.errors import InvalidInput


class Command(BaseCommand):
    help = "Create a backend API key and print it (once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help="comma-separated: read, operate, rewards")

    def handle(self, *args: Any, name: str, scopes: str, **options: Any) -> None:
        try:
            apikey, key = apikey_create(name=name, scopes=scopes, actor="cli:apikey_create")
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"created {apikey.actor} ({apikey.name}) scopes={apikey.scopes}; shown once:")
        self.stdout.write(key)
