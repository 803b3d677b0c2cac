"""The floors' import direction (DESIGN.md section 1), checked on every module's source.

``records/`` is the ground floor and imports nothing of ours; ``pipelines/``, ``model/`` and
``provenance/`` stand on it as siblings (the first two never reach up into audit code);
``kernels/`` imports nothing of ours; only ``assets/`` imports Dagster; nothing imports the command
line (``apertus/``) or the Dagster layer (``assets/``) but themselves; ``assets/`` never runs the
command line, and its Pipes children (``assets/external/``) load ``dagster_pipes``, not Dagster.
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


# How a Python process would start the command line: a module run of our CLI package.
COMMAND_LINE = ("-m apertus", "apertus.cli", '"-m", "apertus', "'-m', 'apertus")


def test_assets_do_not_run_the_command_line():
    # The Dagster layer calls functions (through Dagster Pipes for training), never the CLI: no
    # import of apertus/, and no command that starts it (a string spelling `python -m apertus...`).
    wrong = {}
    for path in modules("assets"):
        source = path.read_text(encoding="utf-8")
        found = sorted(s for s in COMMAND_LINE if s in source)
        if "apertus" in imported_top_levels(path):
            found.append("import apertus")
        if found:
            wrong[str(path.relative_to(REPO))] = found
    assert not wrong, f"assets/ must not run the command line: {wrong}"


def test_pipes_children_load_no_orchestrator():
    # assets/external/ runs in the training process: dagster_pipes only, never dagster itself.
    children = modules("assets/external")
    assert children, "assets/external/ holds the Pipes children"
    wrong = [str(p.relative_to(REPO)) for p in children if "dagster" in imported_top_levels(p)]
    assert not wrong, f"Pipes children must import dagster_pipes, not dagster: {wrong}"
    # Nor through the modules of ours they import from assets/.
    for path in children:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("assets."):
                assert node.module.startswith("assets.external"), f"{path.name} imports {node.module}"


def test_the_command_line_check_finds_a_cli_launch(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('command = [sys.executable, "-m", "apertus.cli", "finetune"]\n')
    assert [s for s in COMMAND_LINE if s in module.read_text()] == ["apertus.cli", '"-m", "apertus']
