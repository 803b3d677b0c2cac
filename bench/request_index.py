"""Benchmark: erasure suppression and request lookup as the request history grows (issue 16, the
erasure part).

For each size in --snapshots (default 10, 100, 1000) it builds, in a temporary data folder with its
own key folder, a ledger in the real format with per snapshot 1,000 entries: 100 ``erasure_requested``
entries (70 URL, 19 sha256, 10 domain, 1 regex: at most 1% patterns) and 900 ``dataset_version_created``
entries, one ``append_many`` batch (one signed head) per snapshot. Then, alternating the old code
(--old, a checkout of main) and the new (this checkout), each in its own process, --repeats times:

- ``start_ms``: what ``ingest_snapshot`` does at step start to get the requests and build the
  filter, by the code's path: "keys" (this branch: ``records.request_keys_build.refresh_keys``, the
  request key index checked against the signed head and extended by the entries since, the filter
  shipping its paths), "index" (``records.request_index.load_index``, every recorded request parsed)
  or "old" (``records.requests.requests``, a read of every ledger entry);
- ``first_doc_ms``: the filter's first document, where its worker builds the matcher ("keys": opens
  the segments and compiles the patterns file; the others: every request's hash sets and patterns);
- ``start_after_step_ms`` and ``first_doc_after_step_ms``: the same after one more snapshot's 1,000
  entries (100 of them requests) were appended, in the same process (a compiled pattern set is reused
  by "keys" only when the patterns file is unchanged, so here it is compiled again);
- ``per_doc_ns``: ``SuppressionFilter.filter`` per document over --docs documents (1% named by URL,
  1% by domain, 0.5% by hash, the rest kept; ~2 KB of text each, so the pattern set is searched);
- ``per_doc_key_ns``: of that, the URL, hash and domain-suffix lookups alone (``RequestMatcher.by_key``);
- ``lookup_ms``: ``find_request`` by id prefix (what ``apertus compliance impact ID`` and the
  sensor's dedup do first);
- ``config_bytes``: the size of the sealed config entry naming the requests applied;
- ``keys_rebuild_s`` (once per size, this checkout): the key index built from the ledger's first entry.

Prints JSON and writes it to --out. ``measure(data, n_docs)`` runs in the code on ``sys.path`` and
is importable by bench/scale.py. Usage: python bench/request_index.py --old /work/main
[--snapshots 10 100 1000] [--repeats 3] [--docs 20000] [--out bench/request_index.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PER_SNAPSHOT = 1000
REQUESTS_PER_SNAPSHOT = 100
KINDS = ["url"] * 70 + ["sha256"] * 19 + ["domain"] * 10 + ["regex"]


def _request_value(kind: str, n: int) -> str:
    digest = hashlib.sha256(str(n).encode()).hexdigest()
    return {
        "url": f"https://site{n % 997}.example/{digest[:16]}",
        "sha256": digest,
        "domain": f"d{n}.example",
        "regex": rf"person{n}@mail\.example",
    }[kind]


def _events(snapshot: int) -> list[tuple[str, dict]]:
    from records.ledger import DATASET_VERSION_CREATED, ERASURE_REQUESTED
    from records.requests import REQUEST_FORMAT, request_id_of

    events = []
    for k in range(PER_SNAPSHOT):
        n = snapshot * PER_SNAPSHOT + k
        if k < REQUESTS_PER_SNAPSHOT:
            kind, value, at = KINDS[k], _request_value(KINDS[k], n), "2026-01-01T00:00:00Z"
            request = {"request_id": request_id_of(kind, value, at, None), "kind": kind, "value": value}
            events.append(
                (ERASURE_REQUESTED, {"format": REQUEST_FORMAT, **request, "requested_at": at, "note": None})
            )
        else:
            digest = hashlib.sha256(str(n).encode()).hexdigest()
            events.append((DATASET_VERSION_CREATED, {"dataset_version": f"quality_filtered/{digest}",
                           "snapshot": f"crawl-{snapshot:04d}", "manifest_sha256": digest[::-1]}))  # fmt: skip
    return events


def build(data: Path, snapshots: int) -> float:
    """The synthetic history in ``data``; seconds taken."""
    from records.layout import DataLayout
    from records.ledger import Ledger

    start = time.perf_counter()
    ledger = Ledger(DataLayout(data).ledger)
    for s in range(snapshots):
        ledger.append_many(_events(s))
    return time.perf_counter() - start


def _documents(n: int, requests: list) -> list:
    from datatrove.data import Document

    urls = [r.value for r in requests if r.kind == "url"]
    hashes = [r.value for r in requests if r.kind == "sha256"]
    domains = [r.value for r in requests if r.kind == "domain"]
    filler = "Plain words of a page that names nobody, repeated to a realistic length. " * 27
    docs = []
    for i in range(n):
        url, sha = f"https://kept{i % 5000}.example/page/{i}", hashlib.sha256(str(i).encode()).hexdigest()
        if i % 100 == 1:
            url = urls[i % len(urls)]
        elif i % 100 == 2:
            url = f"https://www.sub.{domains[i % len(domains)]}/x/{i}"
        elif i % 200 == 3:
            sha = hashes[i % len(hashes)]
        docs.append(Document(text=filler, id=str(i), metadata={"url": url, "sha256": sha}))
    return docs


def measure(data: Path, n_docs: int) -> dict:
    """Times of the code on ``sys.path`` over the history in ``data``: the request key index
    ("keys": this branch), the request index ("index": main before it) or the ledger ("old")."""
    from pipelines.suppression import SuppressionFilter
    from records.erasure_match import RequestMatcher
    from records.layout import DataLayout
    from records.ledger import Ledger
    from records.requests import find_request

    layout = DataLayout(data)
    try:
        from records.request_keys_build import refresh_keys

        path = "keys"
    except ImportError:
        path = "index"
    try:
        from records.request_index import load_index
    except ImportError:
        from records.requests import requests as read_requests

        path = "old"

    def start():
        """What ingest does at step start: the requests (or the key index) and the filter."""
        if path == "keys":
            return SuppressionFilter(stored=refresh_keys(layout))
        found = list(load_index(layout).requests) if path == "index" else read_requests(layout)
        return SuppressionFilter([r.as_filter() for r in found])

    def matcher(block):
        """The filter's matcher as its worker builds it on the first document."""
        block.filter(docs[0])
        return block._matcher

    out = {"path": path}
    t = time.perf_counter()
    block = start()
    out["start_ms"] = (time.perf_counter() - t) * 1000
    requests = list(load_index(layout).requests) if path != "old" else read_requests(layout)
    if path == "old":
        out["config_bytes"] = len(json.dumps({"suppression": sorted(r.request_id for r in requests)}))
    else:
        out["config_bytes"] = len(json.dumps({"erasure_requests": load_index(layout).request_set()}))
    t = time.perf_counter()
    find_request(layout, requests[len(requests) // 2].request_id[:12])
    out["lookup_ms"] = (time.perf_counter() - t) * 1000
    docs = _documents(n_docs, requests)
    t = time.perf_counter()
    keys_matcher = matcher(block)
    out["first_doc_ms"] = (time.perf_counter() - t) * 1000
    if path == "old":  # main before the request index compiled the matcher at start
        keys_matcher = RequestMatcher([r.as_filter() for r in requests])
    t = time.perf_counter()
    dropped = sum(block.filter(d) is not True for d in docs)
    out["per_doc_ns"] = (time.perf_counter() - t) / n_docs * 1e9
    out["dropped"] = dropped
    keys = [(d.metadata["url"], d.metadata["sha256"]) for d in docs]
    t = time.perf_counter()
    for url, sha256 in keys:
        keys_matcher.by_key(url, sha256)
    out["per_doc_key_ns"] = (time.perf_counter() - t) / n_docs * 1e9
    # One more snapshot's entries (100 of them requests): the index is extended by them.
    Ledger(layout.ledger).append_many(_events(len(requests) // REQUESTS_PER_SNAPSHOT))
    t = time.perf_counter()
    block = start()
    out["start_after_step_ms"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    matcher(block)
    out["first_doc_after_step_ms"] = (time.perf_counter() - t) * 1000
    return out


def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}  # fmt: skip


def _run(code: Path, data: Path, n_docs: int) -> dict:
    # This file's measure (runpy: by path, so --old's own bench/ is not the one run) over --old's modules.
    script = f"import sys; sys.path.insert(0, {str(code)!r}); " + (
        f"import json, pathlib, runpy; measure = runpy.run_path({str(Path(__file__).resolve())!r})['measure']; "
        f"print(json.dumps(measure(pathlib.Path({str(data)!r}), {n_docs})))"
    )
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="a checkout of the old code (main)")
    parser.add_argument("--snapshots", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=HERE / "bench" / "request_index.json")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from records.keys import KEYS_ENV, create_identity
    from records.layout import DataLayout

    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "load_before": os.getloadavg()}, "sizes": {}}  # fmt: skip
    for snapshots in args.snapshots:
        tmp = Path(tempfile.mkdtemp(prefix="request-index-bench-"))
        try:
            os.environ[KEYS_ENV] = str(tmp / "keys")
            create_identity(tmp / "keys")
            data = tmp / "data"
            built_s = build(data, snapshots)
            from records.request_index import rebuild_index
            from records.request_keys_build import rebuild_keys

            t = time.perf_counter()
            rebuild_index(DataLayout(data))  # what a first run (or a changed index) pays once
            rebuild_s = time.perf_counter() - t
            t = time.perf_counter()
            rebuild_keys(DataLayout(data))
            keys_rebuild_s = time.perf_counter() - t
            pristine = tmp / "pristine"
            shutil.copytree(data, pristine)
            runs: dict[str, list[dict]] = {"old": [], "new": []}  # old: --old (main), new: this checkout
            for _ in range(args.repeats):
                for path, code in (("old", args.old), ("new", HERE)):
                    # Each run starts from the same data folder (a run appends one step's entries).
                    shutil.rmtree(data)
                    shutil.copytree(pristine, data)
                    runs[path].append(_run(code, data, args.docs))
            keys = ["start_ms", "start_after_step_ms", "first_doc_ms", "first_doc_after_step_ms", "lookup_ms",
                    "per_doc_ns", "per_doc_key_ns"]  # fmt: skip
            entry = {
                "ledger_entries": snapshots * PER_SNAPSHOT,
                "requests": snapshots * REQUESTS_PER_SNAPSHOT,
                "build_s": round(built_s, 2),
                "index_rebuild_s": round(rebuild_s, 3),
                "keys_rebuild_s": round(keys_rebuild_s, 3),
                **{path: {k: _summary([r[k] for r in rs]) for k in keys} for path, rs in runs.items()},
                "config_bytes": {path: rs[0]["config_bytes"] for path, rs in runs.items()},
                "dropped": {path: rs[0]["dropped"] for path, rs in runs.items()},
            }
            results["sizes"][str(snapshots)] = entry
            print(json.dumps({snapshots: entry}), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
