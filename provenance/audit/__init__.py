"""The auditor's questions (DESIGN.md section 4), answered from the records in the data folder.

    versions.py  the dataset versions the catalog knows, their graph and their ledger entries
    lookup.py    per-version lookup files (sorted Parquet) that make membership queries fast
    contains.py  membership: was a URL, hash or text snippet in, and if dropped, where and why
    lineage.py   the chain of versions behind a version, down to the snapshot's files
    prov.py      that chain as W3C PROV-JSON
    render.py    that chain as a tree on the terminal
    diff.py      documents added and removed between two versions, by reason
    verify.py    re-hash everything and check the ledger; name exactly what differs

Nothing here imports Dagster, torch, datatrove or polars: ``apertus audit`` must start fast.
"""
