"""Benchmark of the ledger: appending 100k entries, proving one, checking the whole log.

In a temporary folder (or --keep DIR), with realistic ``dataset_version_created`` payloads:

- single appends (``Ledger.append``: flock, three fsyncs and one signed tree head each), --singles
  of them (0: skip), extrapolated to --entries;
- batched appends (``Ledger.append_many``, one lock, three fsyncs and one head per batch): --entries
  entries in batches of --batch, into a fresh ledger;
- at --entries: the inclusion proof of a random entry (time, hashes, bytes) and its offline check
  against the latest signed head with the public key only; the consistency proof between the head
  at half the entries and the latest (time, hashes) and its check; a fresh ``Ledger``'s first
  append (it takes frontier.json, checked against the signed head; bench/ledger_scale.py compares
  it with re-reading the leaf hash cache);
- ``Ledger.verify()`` of the whole log: every entry re-hashed, every head's signature and root.

Timings are medians of --repeats where repeated. Usage: python bench/ledger.py [--entries 100000]
[--batch 1000] [--singles 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from records.ledger import DATASET_VERSION_CREATED, Ledger, verify_entry_offline  # noqa: E402
from records.ledger.format import TREE_HEADS  # noqa: E402
from records.merkle import verify_consistency  # noqa: E402
from records.signing import SignedTreeHead  # noqa: E402


def _payload(n: int) -> dict:
    digest = hashlib.sha256(str(n).encode()).hexdigest()
    parent = hashlib.sha256(str(n - 1).encode()).hexdigest()
    return {
        "dataset_version": f"quality_filtered/{digest}",
        "snapshot": f"crawl-{n % 97:02d}",
        "parents": [f"language_identified/{parent}"],
        "code_version": "712253fda92d22e6b0c0ffee",
        "manifest_sha256": hashlib.sha256(digest.encode()).hexdigest(),
    }


def _events(start: int, stop: int) -> list[tuple[str, dict]]:
    return [(DATASET_VERSION_CREATED, _payload(n)) for n in range(start, stop)]


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the ledgers here and keep them")
    parser.add_argument("--out", type=Path, help="also write the report (JSON) to this file")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="apertus-ledger-bench-"))
    report: dict = {"entries": args.entries, "batch": args.batch, "singles": args.singles,
                    "repeats": args.repeats, "load_average_start": os.getloadavg()}  # fmt: skip
    try:
        if args.singles:
            single = Ledger(root / "single")
            events = _events(0, args.singles)
            start = time.perf_counter()
            for event_type, payload in events:
                single.append(event_type, payload)
            seconds = time.perf_counter() - start
            report["single.appends_per_s"] = round(args.singles / seconds, 1)
            report[f"single.extrapolated_{args.entries}_s"] = round(seconds / args.singles * args.entries, 1)

        ledger = Ledger(root / "batched")
        batch_ms = []
        start = time.perf_counter()
        for first in range(0, args.entries, args.batch):
            t = time.perf_counter()
            ledger.append_many(_events(first, min(args.entries, first + args.batch)))
            batch_ms.append((time.perf_counter() - t) * 1000)
        seconds = time.perf_counter() - start
        report["batched.total_s"] = round(seconds, 2)
        report["batched.entries_per_s"] = round(args.entries / seconds, 1)
        report["batched.batch_ms_median"] = round(statistics.median(batch_ms), 2)
        if args.singles:
            report["batched.speedup_over_single"] = round(
                report["batched.entries_per_s"] / report["single.appends_per_s"], 1
            )
        report["files_bytes"] = {
            p.name: p.stat().st_size for p in sorted(ledger.root.iterdir()) if p.is_file()
        }

        head = ledger.tree_head()
        pem = ledger.public_key_pem()
        index = random.Random(0).randrange(args.entries)
        entry_line = next(e.canonical_json for e in ledger.entries() if e.index == index)
        ms, proof = _median_ms(lambda: ledger.inclusion_proof(index), args.repeats)
        ok_ms, ok = _median_ms(
            lambda: verify_entry_offline(entry_line, index, proof, head.to_json(), pem), args.repeats
        )
        assert ok, "the inclusion proof does not verify"
        report["inclusion"] = {"index": index, "tree_size": head.tree_size, "proof_ms": ms,
                               "hashes": len(proof), "bytes": 32 * len(proof),
                               "hex_json_bytes": len(json.dumps(proof)), "verify_offline_ms": ok_ms}  # fmt: skip

        lines = (ledger.root / TREE_HEADS).read_bytes().splitlines()
        heads = [SignedTreeHead.from_json(line) for line in lines]
        old = min(heads, key=lambda h: abs(h.tree_size - args.entries // 2))
        ms, proof = _median_ms(lambda: ledger.consistency_proof(old.tree_size, head.tree_size), args.repeats)
        ok = verify_consistency(
            old.tree_size,
            head.tree_size,
            bytes.fromhex(old.root_hash),
            bytes.fromhex(head.root_hash),
            [bytes.fromhex(p) for p in proof],
        )
        assert ok, "the consistency proof does not verify"
        report["consistency"] = {"old_size": old.tree_size, "new_size": head.tree_size, "proof_ms": ms,
                                 "hashes": len(proof), "bytes": 32 * len(proof)}  # fmt: skip

        start = time.perf_counter()
        Ledger(ledger.root).append(*_events(args.entries, args.entries + 1)[0])
        report["fresh_instance_first_append_ms"] = round((time.perf_counter() - start) * 1000, 1)

        start = time.perf_counter()
        problems = ledger.verify()
        report["verify_s"] = round(time.perf_counter() - start, 2)
        report["verify_problems"] = len(problems)
        report["tree_heads"] = len(lines) + 1
        assert not problems, problems[:5]
        report["load_average_end"] = os.getloadavg()
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
