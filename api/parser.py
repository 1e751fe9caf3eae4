"""The API's JSON bodies: decoded, then every string (keys too) checked by core.text."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from core.errors import MalformedFrame
from core.text import json_text_problem


class TextCheckedParser(Parser):
    """ninja's JSON parser, refusing a body with text no database can store (NUL, a lone
    surrogate) as 400 ``malformed`` naming the field, before any schema or service sees it."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = json.loads(request.body)
        if found := json_text_problem(data):
            where, problem = found
            raise MalformedFrame(f"{where or 'the body'} {problem}", field=where or None)
        return data  # type: ignore[no-any-return]  # ninja's schemas check the shape
