"""``manage.py api_openapi [--output docs/openapi.json]``: the API's OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from api.api import api


def openapi_text() -> str:
    """The OpenAPI document of /api/v1/ as the checked-in copy spells it."""
    schema = api.get_openapi_schema(path_prefix="/api/v1/")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


class Command(BaseCommand):
    help = "Print (or write) the OpenAPI document of /api/v1/ (docs/openapi.json is a reviewed copy)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", help="write to this file instead of stdout")

    def handle(self, *args: Any, output: str | None = None, **options: Any) -> None:
        text = openapi_text()
        if output:
            Path(output).write_text(text)
        else:
            self.stdout.write(text, ending="")
