"""The docs stay true to the tree: every file path and every dotted name of the project's own
modules (``transport.hub.UVICORN_WS_ARGS``, ``python -m tools.bench.fanout``) that a document
names exists."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

from liveops.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[1]
# A repository path: at least one folder, then a file with a known ending (URLs such as
# /ws/bosses/<slug>/ start with a slash and are not matched).
PATH_RE = re.compile(r"(?<![\w/.<{-])((?:[a-z_][\w.-]*/)+[\w.-]+\.(?:py|js|lua|html|md|toml|css|cfg|json))\b")


# Top-level packages of the project (and the SDK's), plus names of packages that are gone, so
# that a document still naming one is caught.
PROJECT_PACKAGES = sorted(
    {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {"worldboss_sdk", "benchmarks"}
)
DOTTED_RE = re.compile(r"(?<![\w./-])((?:" + "|".join(PROJECT_PACKAGES) + r")(?:\.[A-Za-z_]\w*)+)")


def _documents() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    docs = [ROOT / name for name in out.stdout.split()]
    # Documents not committed yet count too (a new doc is checked before its first commit).
    others = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({*docs, *(ROOT / name for name in others.stdout.split())})


def _named_paths(doc: Path) -> list[tuple[int, str]]:
    found = []
    for lineno, line in enumerate(doc.read_text().splitlines(), 1):
        found.extend((lineno, m.group(1)) for m in PATH_RE.finditer(line))
    return found


def _exists(path: str, doc: Path) -> bool:
    # A path is read from the repository root, or relative to the document that names it.
    return (ROOT / path).exists() or (doc.parent / path).exists()


def test_the_scan_finds_paths_and_tells_a_gone_file() -> None:
    doc = ROOT / "docs" / "architecture.md"
    assert _named_paths(doc), "docs/architecture.md names files; the scan must see them"
    assert not _exists("bosses/gone_module.py", doc)


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_document_names_exists(doc: Path) -> None:
    missing = [
        f"{doc.relative_to(ROOT)}:{lineno}: {path}"
        for lineno, path in _named_paths(doc)
        if not _exists(path, doc)
    ]
    assert not missing, "documents name files that are gone:\n" + "\n".join(missing)


def _django_names() -> set[str]:
    """Model labels (``audit.AuditEntry``) and permission names (``bosses.operate_boss``:
    the default four of every model and each ``Meta.permissions`` entry)."""
    from django.apps import apps

    names: set[str] = set()
    for model in apps.get_models():
        meta = model._meta
        names.add(meta.label)
        names.update(f"{meta.app_label}.{action}_{meta.model_name}" for action in meta.default_permissions)
        names.update(f"{meta.app_label}.{codename}" for codename, _ in meta.permissions)
    return names


def _resolves(dotted: str) -> bool:
    """A module, or an attribute chain on the longest importable module prefix, the name of a
    registered Celery task (tasks are named ``<app>.<task>``), a model label or a permission."""
    celery_app.loader.import_default_modules()  # registers the apps' tasks (autodiscovery)
    if dotted in celery_app.tasks or dotted in _django_names():
        return True
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_the_dotted_name_scan_tells_a_gone_module() -> None:
    assert _resolves("transport.hub.UVICORN_WS_ARGS") and _resolves("worldboss_sdk.protocol.as_dict")
    assert _resolves("bosses.tick_live_bosses")  # a Celery task name
    assert _resolves("bosses.operate_boss") and _resolves("audit.AuditEntry")  # permission, model label
    assert not _resolves("bosses.operate_everything") and not _resolves("audit.AuditTrail")
    assert not _resolves("benchmarks.fanout") and not _resolves("transport.hub.raw_writer")
    assert DOTTED_RE.findall("run `python -m benchmarks.fanout` (see liveops.fanout.X)") == [
        "benchmarks.fanout",
        "liveops.fanout.X",
    ]


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_project_name_a_document_names_resolves(doc: Path) -> None:
    missing = [
        f"{doc.relative_to(ROOT)}:{lineno}: {m.group(1)}"
        for lineno, line in enumerate(doc.read_text().splitlines(), 1)
        for m in DOTTED_RE.finditer(line)
        if not _resolves(m.group(1))
    ]
    assert not missing, "documents name modules or attributes that are gone:\n" + "\n".join(missing)


# --- the configuration table (core/config.py) ---------------------------------------------------

ROW_RE = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|")


def _readme_configuration_rows() -> list[str]:
    """The rows of the README's table under "Configuration (environment)"."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("## Configuration (environment)")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    return [line for line in lines[start:end] if line.startswith("| `")]


def test_the_readme_lists_every_variable_the_product_reads_and_no_other():
    from core.config import REGISTRY

    documented = [m.group(1) for row in _readme_configuration_rows() if (m := ROW_RE.match(row))]
    registered = [s.name for s in REGISTRY]
    missing = sorted(set(registered) - set(documented))
    unknown = sorted(set(documented) - set(registered))
    assert not missing, f"README's configuration table lacks {missing}: paste `python -m core.config`"
    assert not unknown, f"README documents variables the product does not read: {unknown}"


def test_the_readme_table_is_the_registry_s():
    from core.config import markdown_table

    generated = markdown_table().splitlines()[2:]
    differ = [row for row in _readme_configuration_rows() if row not in generated]
    assert not differ, "README rows differ from core.config.REGISTRY (paste `python -m core.config`):\n" + (
        "\n".join(differ)
    )


# --- docs/protocol.md's "Frame fields" tables and samples ---------------------------------

PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
TABLE_HEADING_RE = re.compile(r"^### `([\w.\[\]]+)`$")
FIELD_ROW_RE = re.compile(r"^\| `(\w+)` \| (.+) \| (yes|no) \|$")


def _frame_field_tables(text: str) -> dict[str, list[tuple[str, str, bool]]]:
    """``{name: [(field, type, required), ...]}`` of the "## Frame fields" section."""
    section = text.split("\n## Frame fields\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    rows: list[tuple[str, str, bool]] = []
    for line in section.splitlines():
        if heading := TABLE_HEADING_RE.match(line):
            rows = tables.setdefault(heading.group(1), [])
        elif row := FIELD_ROW_RE.match(line):
            rows.append((row.group(1), row.group(2), row.group(3) == "yes"))
    return tables


def test_the_frame_field_tables_are_the_typed_dicts() -> None:
    """Each frame and body of core/messages.py has a table listing exactly its fields, with
    their types and which are required, in declaration order: the tables cannot drift."""
    from tests.support.frame_schema import documented_schemas, field_rows

    tables = _frame_field_tables(PROTOCOL_DOC.read_text())
    schemas = documented_schemas()
    assert sorted(tables) == sorted(schemas)
    for name, schema in schemas.items():
        assert tables[name] == field_rows(schema), f"docs/protocol.md's table of `{name}`"


def test_the_table_reader_sees_a_drifted_row() -> None:
    text = '\n## Frame fields\n\n### `expired`\n\n| `type` | `"expired"` | yes |\n| `boss` | string | no |\n'
    assert _frame_field_tables(text) == {
        "expired": [("type", '`"expired"`', True), ("boss", "string", False)]
    }


def test_every_sample_server_frame_of_the_protocol_doc_passes_its_schema() -> None:
    """The JSON examples of docs/protocol.md are frames a server may send."""
    import json

    from core.messages import FRAMES, StateApiBody
    from tests.support.frame_schema import check, check_frame

    checked = 0
    for block in re.findall(r"```json\n(.*?)```", PROTOCOL_DOC.read_text(), flags=re.S):
        for line in block.splitlines():
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            if not isinstance(frame, dict) or frame.get("type") not in FRAMES:
                continue  # a client's frame
            if frame["type"] == "state" and "shards" in frame:  # GET /api/bosses/<slug>/state
                check(StateApiBody, frame)
            else:
                check_frame(frame)
            checked += 1
    assert checked >= 15
