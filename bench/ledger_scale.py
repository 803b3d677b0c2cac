"""Benchmark: does a step's ledger bookkeeping stay flat as the ledger grows (issue 16, the ledger part)?

At --sizes entries (default 1k, 10k, 100k; built with ``append_many`` in batches of --batch, one signed
head per batch, in the real format, in a temporary data folder with its own key folder), times:

- one ``append`` by a fresh ``Ledger`` (as each step's process does): the old path (frontier.json
  removed, so it re-reads leaf_hashes.bin to rebuild the compact range) against the new one (it takes
  frontier.json, checked against the signed head), alternating, --repeats times each;
- the per-step check after a step's --batch new entries: ``verify_since_checked`` (from the last
  head it verified, held in the key folder) against the full ``verify()``, alternating, --repeats each.

Prints JSON: per size, each path's median and spread (min, max) in ms and old/new ratios, and the
growth from the smallest to the largest size. Usage: python bench/ledger_scale.py [--sizes 1000 10000
100000] [--repeats 3] [--batch 1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import elapsed_ms, summary  # noqa: E402
from records.keys import KEYS_ENV, create_identity  # noqa: E402
from records.ledger import DATASET_VERSION_CREATED, Ledger  # noqa: E402
from records.ledger.format import FRONTIER, TREE_HEADS  # noqa: E402


def _events(start: int, stop: int) -> list[tuple[str, dict]]:
    out = []
    for n in range(start, stop):
        digest = hashlib.sha256(str(n).encode()).hexdigest()
        out.append((DATASET_VERSION_CREATED, {"dataset_version": f"quality_filtered/{digest}",
                    "snapshot": f"crawl-{n // 1000:04d}", "manifest_sha256": digest[::-1]}))  # fmt: skip
    return out


def _ms(fn) -> float:
    return elapsed_ms(fn)


def _summary(times: list[float]) -> dict:
    return summary(times, "_ms", 2)


def _fresh_append(root: Path, n: int, rebuild: bool) -> None:
    if rebuild:
        (root / FRONTIER).unlink()
    Ledger(root).append(*_events(n, n + 1)[0])


def bench_size(base: Path, size: int, batch: int, repeats: int) -> dict:
    root = base / f"data-{size}" / "ledger"
    start = time.perf_counter()
    led = Ledger(root)
    for lo in range(0, size, batch):
        led.append_many(_events(lo, min(size, lo + batch)))
    built_s = time.perf_counter() - start
    old, new = [], []
    for _ in range(repeats):  # alternating, so drifting load hits both paths alike
        old.append(_ms(lambda: _fresh_append(root, Ledger(root).size(), True)))
        new.append(_ms(lambda: _fresh_append(root, Ledger(root).size(), False)))
    assert not Ledger(root).verify()
    assert not Ledger(root).verify_since_checked()  # holds the latest head: the first check is the full one
    full, incremental = [], []
    for _ in range(repeats):
        n = Ledger(root).size()
        Ledger(root).append_many(_events(n, n + batch))  # one step's entries
        incremental.append(_ms(lambda: Ledger(root).verify_since_checked()))
        full.append(_ms(lambda: Ledger(root).verify()))
    o, w = _summary(old), _summary(new)
    f, i = _summary(full), _summary(incremental)
    return {"entries": size, "heads": len((root / TREE_HEADS).read_bytes().splitlines()), "build_s": round(built_s, 1),
            "append_full_rebuild": o, "append_frontier_file": w,
            "append_ratio_old_over_new": round(o["median_ms"] / w["median_ms"], 1),
            "check_full_verify": f, "check_since_held_head": i, "new_entries_per_check": batch,
            "check_ratio_full_over_incremental": round(f["median_ms"] / i["median_ms"], 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="apertus-ledger-scale-"))
    os.environ[KEYS_ENV] = str(base / "keys")
    create_identity(base / "keys")
    report: dict = {"load_average_start": os.getloadavg(), "repeats": args.repeats, "sizes": []}
    try:
        for size in args.sizes:
            report["sizes"].append(bench_size(base, size, args.batch, args.repeats))
            print(json.dumps(report["sizes"][-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first, last = report["sizes"][0], report["sizes"][-1]
    report["growth_smallest_to_largest"] = {
        k: round(last[k]["median_ms"] / first[k]["median_ms"], 2)
        for k in ("append_full_rebuild", "append_frontier_file", "check_full_verify", "check_since_held_head")
    }
    report["load_average_end"] = os.getloadavg()
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
