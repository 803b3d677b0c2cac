"""The files of a ``model_release`` version (provenance.compliance writes them)::

    <document>.md, <document>.html   the compliance documents, one pair per name in DOCUMENTS
    sources.json                     the model version, ledger entries and head they were made from

The names are spelled here only.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_CARD = "model-card"
DOCUMENTS = ("training-content-summary", "annex-xi", "gdpr-art30", MODEL_CARD)
SOURCES = "sources.json"

FILE_NAMES = (SOURCES,)


def markdown_file(document: str) -> str:
    """The file name of a document's Markdown text: ``model-card.md``."""
    return f"{document}.md"


def read_sources(folder: Path | str) -> dict:
    """The ``sources.json`` of a model_release version folder (or of a folder of documents)."""
    return json.loads((Path(folder) / SOURCES).read_text(encoding="utf-8"))
