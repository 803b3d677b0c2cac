"""The auditor's questions (DESIGN.md section 4), answered from the records in the data folder.

    versions.py  the dataset and model versions the catalog knows, their graph and their ledger entries
    lookup.py    per-version lookup.bin files (sorted digests and URL keys, zlib row blocks) that make
                 membership queries fast; lookup_file.py is their format and reader
    contains.py  membership: was a URL, hash or text snippet in, and if dropped, where and why
    model_use.py membership in a model: was the document trained on, in which stages, how often
    lineage.py   the chain of versions behind a version, down to the snapshot's files
    prov.py      that chain as W3C PROV-JSON
    render.py    that chain as a tree on the terminal
    diff.py      documents added and removed between two versions, by reason
    verify.py    re-hash everything and check the ledger; name exactly what differs

Nothing here imports Dagster, torch, datatrove or polars: ``apertus audit`` must start fast.
"""
