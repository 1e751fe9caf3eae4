#!/usr/bin/env python3
"""Refuse functions longer than a line limit (ruff counts statements and branches, not lines).

Usage: check_function_size.py [--max-lines N] [PATH ...]

A function's length runs from its ``def`` line to its last line (decorators not counted; the
docstring and comments are). Each PATH is a file or a directory walked for ``*.py``; the
default is the current directory. Skipped while walking: hidden directories, ``migrations``
and ``__pycache__``, and ``tests`` (a test reads top to bottom as one scenario; ruff's size
rules exempt tests too).

A function that is clearest in its long form (a table-like seed, one linear script) carries
the reason on its signature::

    def seed_catalogue() -> None:  # noqa: long-function - one row per boss, read as a table

A marker without a reason after the dash is refused like a long function. Prints one line
per offence (``path:line: name is N lines (limit M)``) and exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 120
SKIP_DIRS = frozenset({"migrations", "__pycache__", "tests", "node_modules"})
MARKER = re.compile(r"#\s*noqa:\s*long-function\b(?P<rest>.*)$")
REASON = re.compile(r"^\s*-\s*\S")


@dataclass(frozen=True)
class Offence:
    """One function over the limit (or a marker with no reason)."""

    path: Path
    line: int
    name: str
    lines: int
    limit: int
    reason_missing: bool = False

    def __str__(self) -> str:
        if self.reason_missing:
            return (
                f"{self.path}:{self.line}: {self.name}: '# noqa: long-function' needs a reason "
                "('# noqa: long-function - <why>')"
            )
        return f"{self.path}:{self.line}: {self.name} is {self.lines} lines (limit {self.limit})"


def python_files(paths: list[Path]) -> Iterator[Path]:
    """The ``*.py`` files of ``paths``, directories walked in sorted order minus SKIP_DIRS."""
    for path in paths:
        if path.is_file():
            yield path
            continue
        for child in sorted(path.iterdir()):
            if child.is_dir():
                if not child.name.startswith(".") and child.name not in SKIP_DIRS:
                    yield from python_files([child])
            elif child.suffix == ".py":
                yield child


def _marker(source_lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The text after ``# noqa: long-function`` on the function's signature lines, if any."""
    body_start = node.body[0].lineno if node.body else node.lineno + 1
    for line in source_lines[node.lineno - 1 : max(body_start - 1, node.lineno)]:
        found = MARKER.search(line)
        if found:
            return found.group("rest")
    return None


def file_offences(path: Path, *, limit: int = MAX_LINES) -> list[Offence]:
    """Every function (methods and nested functions included) of ``path`` over ``limit``."""
    source = path.read_text(encoding="utf-8")
    source_lines = source.splitlines()
    offences = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        marker = _marker(source_lines, node)
        if marker is not None and not REASON.match(marker):
            offences.append(Offence(path, node.lineno, node.name, lines, limit, reason_missing=True))
        elif lines > limit and marker is None:
            offences.append(Offence(path, node.lineno, node.name, lines, limit))
    return sorted(offences, key=lambda o: o.line)


def main(argv: list[str] | None = None) -> int:
    """Check the given paths; print the offences; 1 when there is any, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path()])
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    offences = [o for f in python_files(args.paths) for o in file_offences(f, limit=args.max_lines)]
    for offence in offences:
        print(offence)
    return 1 if offences else 0


if __name__ == "__main__":
    sys.exit(main())
