"""scripts/check_function_size.py: the line limit on functions that `make lint` enforces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_function_size.py"


@pytest.fixture(scope="module")
def checker():
    # registered before it runs: its dataclass looks its own module up in sys.modules
    spec = importlib.util.spec_from_file_location("check_function_size", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def function(name: str, body_lines: int, *, signature_comment: str = "", indent: str = "") -> str:
    """A function of exactly ``body_lines + 1`` lines (its def line and ``body_lines`` statements)."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}def {name}():{signature_comment}\n{body}"


def test_a_function_at_the_limit_passes_and_one_line_more_is_refused(checker, tmp_path, capsys):
    (tmp_path / "ok.py").write_text(function("fits", 119))
    (tmp_path / "long.py").write_text("import os\n\n\n" + function("too_long", 120))

    assert checker.main([str(tmp_path)]) == 1

    out = capsys.readouterr().out.splitlines()
    assert out == [f"{tmp_path / 'long.py'}:4: too_long is 121 lines (limit 120)"]


def test_methods_nested_and_async_functions_count_and_decorators_do_not(checker, tmp_path):
    source = (
        "import functools\n\n\nclass Service:\n"
        + function("method", 30, indent="    ")
        + "\n\n"
        + function("outer", 2).replace("    x1 = 1\n", function("inner", 20, indent="    "))
        + "\n\n@functools.cache\n@functools.cache\n"
        + function("decorated", 29).replace("def ", "async def ")
    )
    path = tmp_path / "mod.py"
    path.write_text(source)

    found = {(o.name, o.lines) for o in checker.file_offences(path, limit=20)}

    assert found == {("method", 31), ("outer", 23), ("inner", 21), ("decorated", 30)}
    assert checker.file_offences(path, limit=31) == []


def test_a_reasoned_marker_on_the_signature_allows_a_long_function(checker, tmp_path):
    marked = "  # noqa: long-function - one row per boss, read as a table"
    multi_line = function("multi", 130).replace("def multi():", f"def multi(\n    a: int,{marked}\n):")
    path = tmp_path / "seed.py"
    path.write_text(function("seed", 130, signature_comment=marked) + "\n\n" + multi_line)

    assert checker.file_offences(path) == []


def test_a_marker_in_the_body_or_without_a_reason_does_not_count(checker, tmp_path):
    in_body = function("in_body", 130).replace("    x0 = 0\n", "    x0 = 0  # noqa: long-function - why\n")
    path = tmp_path / "bad.py"
    path.write_text(
        function("bare", 10, signature_comment="  # noqa: long-function")
        + "\n\n"
        + function("dash_only", 10, signature_comment="  # noqa: long-function -")
        + "\n\n"
        + in_body
    )

    offences = checker.file_offences(path)

    assert [(o.name, o.reason_missing) for o in offences] == [
        ("bare", True),
        ("dash_only", True),
        ("in_body", False),
    ]
    assert "needs a reason" in str(offences[0])


def test_walking_skips_tests_migrations_and_hidden_directories(checker, tmp_path):
    long_function = function("long", 200)
    for skipped in ("tests", "app/migrations", ".venv/lib", "app/__pycache__"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "mod.py").write_text(long_function)
    (tmp_path / "app" / "services.py").write_text(long_function)
    (tmp_path / "app" / "notes.txt").write_text(long_function)

    files = list(checker.python_files([tmp_path]))

    assert files == [tmp_path / "app" / "services.py"]
    # a file named on the command line is checked wherever it is
    assert checker.main([str(tmp_path / "tests" / "mod.py")]) == 1


def test_the_checkout_is_within_the_limit(checker, monkeypatch, capsys):
    monkeypatch.chdir(SCRIPT.parents[1])
    assert checker.main([]) == 0, capsys.readouterr().out
