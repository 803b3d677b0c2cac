"""The floors' import direction (DESIGN.md section 1), checked on every module's source.

``records/`` is the ground floor and imports nothing of ours; ``pipelines/``, ``model/`` and
``provenance/`` stand on it as siblings (the first two never reach up into audit code);
``kernels/`` imports nothing of ours; only ``assets/`` imports Dagster; nothing imports the command
line (``apertus/``) or the Dagster layer (``assets/``) but themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OURS = {"records", "pipelines", "model", "kernels", "provenance", "assets", "apertus", "sample", "bench"}
# package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "records": set(),
    "kernels": set(),
    "pipelines": {"records"},
    "model": {"records", "kernels"},
    "provenance": {"records"},
    "sample": {"records", "pipelines"},
    "assets": {"records", "pipelines", "model", "kernels", "provenance", "sample"},
}
DAGSTER = {"dagster", "dagster_pipes", "dagster_webserver", "dagster_graphql"}


def imported_top_levels(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, at any depth (function-local too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_floors_below(package):
    wrong = {}
    for path in modules(package):
        ours = imported_top_levels(path) & OURS - {package}
        if extra := ours - ALLOWED[package]:
            wrong[str(path.relative_to(REPO))] = sorted(extra)
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])} of ours: {wrong}"


@pytest.mark.parametrize("package", sorted(set(ALLOWED) - {"assets"}))
def test_only_assets_imports_dagster(package):
    wrong = [str(p.relative_to(REPO)) for p in modules(package) if imported_top_levels(p) & DAGSTER]
    assert not wrong, f"{package}/ must not import Dagster: {wrong}"


def test_the_checker_sees_function_local_imports(tmp_path):
    # The direction rules must hold for imports inside functions too, where most of ours sit.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from provenance.audit import contains\n    import dagster as dg\n")
    assert imported_top_levels(module) == {"provenance", "dagster"}
