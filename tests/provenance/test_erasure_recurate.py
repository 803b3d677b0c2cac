"""A request re-curates only the snapshots whose current raw_documents version keeps a document it
names (provenance.erasure_recurate), by URL, hash, domain suffix or pattern; a version that applied
the request no longer counts."""

from __future__ import annotations

import hashlib
import json

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import ingest_snapshot
from provenance.erasure_recurate import snapshots_to_recurate
from records.layout import DataLayout
from records.requests import record_request

ONE = ExecutorConfig(tasks=1, workers=1)


def _snapshot(layout: DataLayout, name: str, texts: dict[str, str]) -> None:
    folder = layout.snapshot_dir(name)
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": url.rsplit("/", 1)[1], "url": url, "text": t}) for url, t in texts.items()]
    (folder / "part-0.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_only_the_snapshots_holding_a_match_are_named(tmp_path):
    layout = DataLayout(tmp_path / "data")
    _snapshot(
        layout, "a", {"https://x.org/p1": "Write to jane@mail.example today.", "https://x.org/p2": "Plain."}
    )
    _snapshot(layout, "b", {"https://news.y.org/p3": "Other words here.", "https://z.org/p4": "More words."})
    raws = {s: ingest_snapshot(layout, s, CurationConfig(), ONE) for s in "ab"}
    url = record_request(layout, "url", "https://x.org/p2")
    domain = record_request(layout, "domain", "y.org")
    pattern = record_request(layout, "regex", r"jane@mail\.example")
    nowhere = record_request(layout, "sha256", hashlib.sha256(b"in no snapshot").hexdigest())
    lookalike = record_request(layout, "domain", "ews.y.org")  # a suffix of the string, not of the labels
    found = snapshots_to_recurate(layout)
    assert found == {
        "a": sorted([url.request_id, pattern.request_id]),
        "b": [domain.request_id],
    }
    assert snapshots_to_recurate(layout, [nowhere, lookalike]) == {}
    assert snapshots_to_recurate(layout, [domain]) == {"b": [domain.request_id]}
    # Once snapshot a is re-curated, its current version applied the requests: only b remains.
    again = ingest_snapshot(layout, "a", CurationConfig(), ONE)
    assert again.created
    assert snapshots_to_recurate(layout) == {"b": [domain.request_id]}
    # Asking about the old version of a names it again.
    old = {"a": raws["a"].manifest.version_id}
    assert snapshots_to_recurate(layout, versions=old) == {"a": sorted([url.request_id, pattern.request_id])}
