"""Benchmark: instructions a cold `apertus audit contains` process executes, at two commits.

Wall and CPU time of a ~200 ms process on a shared machine move with the load by 2-5x (bench/
RESULTS.md); the number of instructions it executes does not. This counts them with valgrind's
callgrind (the "Collected" total; about 40x slower than a plain run, so one run each) for the cold
processes bench/scale.py times: an interpreter start, the contains path's imports, and
``apertus audit contains`` by --url and --sha256, default scope and --model, on a history kept by
``bench/scale.py --keep`` (its samples.json). Each commit's tree is exported with ``git archive``
into a temporary folder and put first on PYTHONPATH; both use this interpreter and its packages.

Usage: python bench/cold_instructions.py KEEP BASE_COMMIT [NEW_COMMIT (default HEAD)] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import audit_index  # noqa: E402


def instructions(command: list[str], env: dict, cwd: Path) -> int:
    """Instructions ``command`` executed (callgrind's total), from its stderr."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        env=env, cwd=cwd, capture_output=True, text=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"{command}: no instruction count ({run.stderr[-400:]})")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("keep", type=Path)
    parser.add_argument("base")
    parser.add_argument("new", nargs="?", default="HEAD")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = args.keep / "data"
    samples = json.loads((data / audit_index.SAMPLES).read_text())
    commands = {**audit_index.floor_commands(), **audit_index.scale_commands(samples, old=False)}
    result = {"keep": str(args.keep), "commits": {}, "instructions": {}}
    with tempfile.TemporaryDirectory(prefix="apertus-ir-") as tmp:
        trees = {}
        for commit in (args.base, args.new):
            short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit], capture_output=True,
                                   text=True, check=True).stdout.strip()  # fmt: skip
            tree = Path(tmp) / short
            tree.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
            trees[short] = tree
        result["commits"] = {"base": list(trees)[0], "new": list(trees)[1]}
        for name, (command, _) in commands.items():
            for short, tree in trees.items():
                env = {**os.environ, "APERTUS_DATA": str(data), "PYTHONPATH": str(tree)}
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                subprocess.run(
                    command, env=env, cwd=tree, capture_output=True
                )  # its bytecode compiled, uncounted
                count = instructions(command, env, tree)
                result["instructions"].setdefault(name, {})[short] = count
            base, new = (result["instructions"][name][s] for s in trees)
            print(f"  {name:<28} {base / 1e6:8.1f} M -> {new / 1e6:8.1f} M instructions ({new / base - 1:+.1%})",
                  flush=True)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
