"""Probe cost of the cross-snapshot dedup index (records.dedup_index) against its size.

Builds 10, 100 and 1000 synthetic segments (ROWS documents each: random sha256 keys, 14 band keys,
112-permutation signatures), then times one probe of QUERIES documents (half of them present,
exact and in every band) two ways: through ``open_prefix`` (at most log2(n) + 1 merged blocks) and
against every single segment (what a probe would cost without merging). Merged blocks are built
once before timing (their build time is printed: paid once per block, amortized over later
snapshots). Prints one JSON line per size.

    python bench/dedup_index.py [--rows 200] [--queries 1000] [--sizes 10,100,1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from records.dedup_index import Segment, open_prefix, segment_path, write_segment

BANDS, PERM = 14, 112


def build(folder: Path, first: int, num_segments: int, rows: int, rng: np.random.Generator) -> list[str]:
    ids = []
    for s in range(first, first + num_segments):
        sha = rng.integers(0, 2**63, (rows, 4), dtype=np.int64).view(np.uint8).reshape(rows, 32)
        shas = [bytes(r).hex() for r in sha]
        write_segment(
            segment_path(folder, f"v{s:05d}"), versions=[f"deduplicated/v{s:05d}"], snapshots=[f"S{s}"],
            ids=[f"S{s}/part-00000.jsonl.gz#{r}" for r in range(rows)], sha256_hex=shas,
            sources=np.zeros(rows, np.uint32), exact_keys=np.array([int(h[:16], 16) for h in shas], np.uint64),
            signatures=rng.integers(0, 2**32, (rows, PERM), dtype=np.uint32),
            signed_rows=np.arange(rows, dtype=np.uint32),
            band_keys=rng.integers(0, 2**64, (rows, BANDS), dtype=np.uint64),
        )  # fmt: skip
        ids.append(f"v{s:05d}")
    return ids


def probe(segments: list[Segment], exact_q: np.ndarray, bands_qb: np.ndarray) -> int:
    """What CrossSnapshotMatches does per segment: exact lookup, every band, signature reads."""
    found = 0
    for segment in segments:
        query, rows = segment.exact_candidates(exact_q)
        found += len(query)
        segment.describe(rows)
        for band in range(BANDS):
            query, signed = segment.band_candidates(band, bands_qb[:, band])
            if len(signed):
                np.asarray(segment.array("signatures")[np.unique(signed)])
            found += len(query)
    return found


def queries(
    folder: Path, ids: list[str], num: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Half hits (rows of random segments), half random keys."""
    exact, bands = (
        [rng.integers(0, 2**64, num // 2, dtype=np.uint64)],
        [rng.integers(0, 2**64, (num // 2, BANDS), dtype=np.uint64)],
    )
    for _ in range(num - num // 2):
        segment = Segment.open(segment_path(folder, ids[rng.integers(len(ids))]))
        row = int(rng.integers(segment.meta["num_documents"]))
        exact.append(np.array([int(segment.describe([row])[0][1][:16], 16)], np.uint64))
        position = int(np.flatnonzero(np.asarray(segment.array("band_rows")[0]) == row)[0])
        keys = np.array([np.asarray(segment.array("band_keys")[b])[np.flatnonzero(
            np.asarray(segment.array("band_rows")[b]) == row)[0]] for b in range(BANDS)], np.uint64)  # fmt: skip
        assert position >= 0
        bands.append(keys[None, :])
    return np.concatenate(exact), np.concatenate(bands)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--out")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit,
                      "cpus": os.cpu_count(), "load_average": os.getloadavg(), "rows_per_segment": args.rows}))  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids: list[str] = []
        for size in sorted(int(s) for s in args.sizes.split(",")):
            ids += build(folder, len(ids), size - len(ids), args.rows, rng)
            start = time.perf_counter()
            merged = open_prefix(folder, ids)
            build_s = time.perf_counter() - start
            exact_q, bands_qb = queries(folder, ids, args.queries, rng)
            timings = {}
            for name, open_segments in (
                ("through_blocks", lambda ids=ids: open_prefix(folder, ids)),
                ("every_segment", lambda ids=ids: [Segment.open(segment_path(folder, i)) for i in ids]),
            ):
                runs = []
                for _ in range(3):
                    start = time.perf_counter()
                    hits = probe(open_segments(), exact_q, bands_qb)
                    runs.append(time.perf_counter() - start)
                timings[name] = {
                    "median_s": sorted(runs)[1],
                    "runs_s": [round(r, 4) for r in runs],
                    "hits": hits,
                }
            assert len(set(ids)) == size
            row = {"num_segments": size, "documents": size * args.rows, "queries": args.queries,
                   "blocks_probed": len(merged), "merge_build_s": round(build_s, 3), **timings,
                   "per_query_us_through_blocks": round(timings["through_blocks"]["median_s"] / args.queries * 1e6, 1)}  # fmt: skip
            print(json.dumps({**row, "load_average": os.getloadavg()}), flush=True)
            results.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
