"""One owner per name: each file name of a version or of the data folder, and each asset name, is
spelled as a string literal in exactly one module outside tests/ and docs/ (its owner in records/,
docs/data-model.md); everything else imports the constant. The names come from records.names, so a
new record joins the check by joining that list."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from records.assets import ASSET_NAMES
from records.names import FILE_NAMES, OWNED_NAMES

REPO = Path(__file__).resolve().parents[2]
SKIPPED = {"tests", "docs", ".venv", "node_modules", "dagster_home", "wheelhouse"}


def code_modules(root: Path) -> list[Path]:
    """Every .py file under ``root`` outside tests/, docs/ and hidden or environment folders."""
    return sorted(
        p
        for p in root.rglob("*.py")
        if not any(part in SKIPPED or part.startswith(".") for part in p.relative_to(root).parts[:-1])
    )


def spellers(names: Iterable[str], paths: Iterable[Path], root: Path) -> dict[str, list[str]]:
    """name -> the modules (paths relative to ``root``) holding it as a whole string literal,
    in single or double quotes (an f-string's literal parts count)."""
    patterns = {name: re.compile(r"""(?<![\\\w])(["'])""" + re.escape(name) + r"\1") for name in names}
    found: dict[str, list[str]] = {name: [] for name in patterns}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for name, pattern in patterns.items():
            if pattern.search(text):
                found[name].append(path.relative_to(root).as_posix())
    return found


def test_the_list_of_names_is_not_empty_and_has_no_repeats():
    assert len(FILE_NAMES) >= 30 and len(ASSET_NAMES) >= 12
    assert "manifest.json" in FILE_NAMES and "index.json" in FILE_NAMES and "token_shards" in ASSET_NAMES
    assert len(set(OWNED_NAMES)) == len(OWNED_NAMES), "two owners declare the same name"


def test_each_name_is_spelled_in_exactly_one_module_of_records():
    found = spellers(OWNED_NAMES, code_modules(REPO), REPO)
    wrong = {
        name: where for name, where in found.items() if len(where) != 1 or not where[0].startswith("records/")
    }
    assert not wrong, f"names spelled outside their one owner in records/ (import the constant): {wrong}"


def test_a_planted_second_spelling_is_caught(tmp_path):
    # The check itself: a copy of the owner and a module spelling one name again, in either quote.
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "owner.py").write_text('INDEX = "index.json"\nLOOKUP = "lookup.bin"\n')
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "step.py").write_text(
        "path = folder / 'index.json'\nname = \"lookup.bin.tmp\"\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text('"index.json"\n')
    found = spellers(["index.json", "lookup.bin"], code_modules(tmp_path), tmp_path)
    assert found == {
        "index.json": ["pipelines/step.py", "records/owner.py"],
        "lookup.bin": ["records/owner.py"],
    }
