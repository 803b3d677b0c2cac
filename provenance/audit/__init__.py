"""The auditor's questions (DESIGN.md section 4), answered from the records in the data folder.

One function per question; the CLI, the catalog's SQL views, the compliance documents and the demo
give its answer (docs/audit.md, "One answer per question"):

    lineage.py   lineage of a version: the chain of versions behind it, down to the snapshot's files
    contains.py  membership in a version: was a URL, hash or text snippet in, and if dropped, where and why
    model_use.py membership in a model's training: trained on, in which stages, how often; or "in the
                 staged data; per-sequence use unknown" for a model without sequence_use.parquet
    diff.py      documents added and removed between two versions, by reason
    (erasure impact: provenance/erasure.py)

    prov.py      a lineage as W3C PROV-JSON
    render.py    the answers as text on the terminal
    verify.py    re-hash everything and check the ledger; name exactly what differs
    repin.py     pin what an older or interrupted data folder left unpinned

The versions, lookups and catalog these read are records/ (records.versions, records.lookup).
Nothing here imports Dagster, torch, datatrove or polars: ``apertus audit`` must start fast.
"""
