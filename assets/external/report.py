"""What a Pipes child reports, in Pipes' terms: typed metadata values, plots and the version checks.

Dagster-free (``dagster_pipes`` only), so the training processes never load the orchestrator.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from records.layout import DataLayout
from records.ledger import Ledger
from records.manifest import MANIFEST, Manifest, verify_version
from records.versions import ledger_records

# What a check reports: (passed, metadata shown beside the result in the UI).
Outcome = tuple[bool, dict]


def value(raw, kind: str) -> dict:
    """A Pipes metadata value of Dagster type ``kind`` (text, md, path, json, int, float, bool)."""
    return {"raw_value": raw, "type": kind}


def typed(raw) -> dict:
    """A plain value as a Pipes metadata value with its type named (Pipes takes a bare dict for a
    ``{raw_value, type}`` pair, so a dict or a list is only ever sent as json)."""
    if raw is None:
        return value(None, "null")
    if isinstance(raw, bool):
        return value(raw, "bool")
    if isinstance(raw, int):
        return value(raw, "int")
    if isinstance(raw, float):
        return value(raw, "float")
    if isinstance(raw, str):
        return value(raw, "text")
    return value(raw, "json")


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (no software stamp, so the same plot gives the same bytes)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def plot_markdown(name: str, png: bytes, path: Path) -> str:
    """Write the plot to ``path`` (beside the instance's storage) and return it as Markdown with the
    image embedded as a data URI (it renders in the metadata panel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"


def plot_values(name: str, png: bytes, path: Path) -> dict[str, dict]:
    """A plot as an image in the metadata panel (``name``) and as a file (``name_png``)."""
    return {name: value(plot_markdown(name, png, path), "md"), f"{name}_png": value(str(path), "path")}


def version_outcomes(folder: Path, layout: DataLayout) -> dict[str, Outcome]:
    """version_verifies: the files still hash to their manifest (a file this process hashed when it
    sealed the version, unchanged since, counts as hashed then: records.seal_stamps); ledger_verifies:
    the ledger (which pinned them) verifies since the last head this check verified (held in the key
    folder). Cost: a ``stat`` per file, hashing only the files not sealed here or changed since (all
    of them for a version reused from an earlier run), and the ledger entries appended since that
    head (a full verification only when no head is held yet)."""
    problems = verify_version(folder, since_sealing=True)
    ledger_problems = Ledger(layout.ledger).verify_since_checked()
    return {
        "version_verifies": (not problems, {"problems": problems[:20]}),
        "ledger_verifies": (not ledger_problems, {"problems": ledger_problems[:20]}),
    }


def version_values(layout: DataLayout, manifest: Manifest, folder: Path, record_file: str) -> dict[str, dict]:
    """The metadata every sealed model version shows: its id, manifest, provenance record and, once
    pinned, its ledger entry."""
    metadata = {
        "model_version": value(manifest.version_id, "text"),
        "manifest": value(str(folder / MANIFEST), "path"),
        "provenance_record": value(str(folder / record_file), "path"),
    }
    pinned = ledger_records(layout).get(manifest.ref)  # this run's entry, or the first run's
    if pinned is not None:
        metadata["ledger_index"] = value(pinned.index, "int")
    return metadata


def report_checks(pipes, outcomes: dict[str, Outcome]) -> None:
    """Report each outcome as an asset check of the asset being materialized."""
    for name, (passed, metadata) in outcomes.items():
        pipes.report_asset_check(name, bool(passed), metadata={k: typed(v) for k, v in metadata.items()})
