"""Model versions: a finished training run sealed like a dataset version, with its provenance record.

A run folder (model.staged_training' output: model.safetensors, checkpoints/, metrics.jsonl, evaluation.json,
run.json, sequence_use.parquet) gets a ``provenance.json`` (below), then is sealed by
records.manifest.seal into ``<data>/datasets/trained_model/<version id>/``: its id is the Merkle
root of every file, the record included, and its parents are the token_shards, tokenizer and
curriculum_stages versions it was trained from, so lineage, diff and verify treat a model like any
other version. A ``model_trained`` ledger entry pins it (manifest, record and weights by sha256).

The record answers "exactly which data, code and configuration produced this model": every dataset
version by curriculum stage, the tokenizer, the code commit and a hash of any uncommitted change, the
full resolved config and the generated DeepSpeed config, a hash of the installed distributions, the
hardware, the seeds, the metrics, and the orchestrator's own record of the inputs it passed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

from records.assets import (
    CURRICULUM_STAGES,
    FINETUNED_MODEL,
    MODEL_ASSETS,
    TOKEN_SHARDS,
    TOKENIZER,
    TRAINED_MODEL,
)
from records.canonical import canonical_json, write_record
from records.hashing import sha256_file
from records.layout import REPO_ROOT, STAGING, DataLayout
from records.ledger.format import MODEL_TRAINED
from records.manifest import MANIFEST, Manifest, load_manifest, seal, version_folder
from records.token_shards import read_index

# The files of a model version (a run folder as model/ writes it, then sealed); spelled here only.
RECORD = "provenance.json"
EXPORT_FILE = "model.safetensors"
RUN = "run.json"
EVALUATION = "evaluation.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LATEST = "latest"  # in checkpoints/: the tag of the latest checkpoint (DeepSpeed's convention)
CHECKPOINT_HASHES = "checkpoint_hashes.json"  # in each checkpoint tag folder (model.checkpoint_integrity)
SEQUENCE_USE = "sequence_use.parquet"  # which sequences each step trained on (model.usage)
REQUIREMENTS_LOCK = "requirements.lock"  # in the checkout, not the data folder: the dependency lock
RECORD_FORMAT = "apertus.provenance-record/1"

FILE_NAMES = (RECORD, EXPORT_FILE, RUN, EVALUATION, METRICS, CHECKPOINT_HASHES, SEQUENCE_USE)


def code_state(repo: Path = REPO_ROOT) -> dict:
    """The commit of the checkout and whether it had uncommitted changes; the diff's sha256 (tracked
    changes plus the content of untracked, non-ignored files) identifies them. Outside a git checkout
    (an installed wheel), a hash of our packages' source files stands in for the commit."""

    import subprocess  # here, not at the top: cold `apertus audit` imports this module (~5 ms)

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "diff_sha256": None, "source_sha256": source_sha256(repo)}
    digest = hashlib.sha256(git("diff", "HEAD", "--binary"))
    untracked = git("ls-files", "--others", "--exclude-standard", "-z").split(b"\0")
    for name in sorted(u for u in untracked if u):
        path = repo / name.decode()
        if path.is_file():
            digest.update(b"\0untracked\0" + name + b"\0" + bytes.fromhex(sha256_file(path)))
    dirty = bool(git("status", "--porcelain", "--untracked-files=normal").strip())
    return {"commit": commit, "dirty": dirty, "diff_sha256": digest.hexdigest() if dirty else None}


def source_sha256(repo: Path = REPO_ROOT) -> str:
    """sha256 over the (path, sha256) of every .py file of our packages."""
    digest = hashlib.sha256()
    for package in ("pipelines", "model", "kernels", "provenance", "assets", "apertus"):
        for path in sorted((repo / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(repo).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def dependency_state(repo: Path = REPO_ROOT) -> dict:
    """sha256 of the sorted ``name==version`` lines of every installed distribution, their count, and
    the sha256 of requirements.lock (what `make` installs), so a drifted environment is visible."""
    from importlib import metadata  # here, not at the top: `apertus audit contains` imports this module

    pins = sorted(
        {f"{d.metadata['Name'].lower()}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    )
    lock = repo / REQUIREMENTS_LOCK
    return {
        "sha256": hashlib.sha256("\n".join(pins).encode()).hexdigest(),
        "count": len(pins),
        "lock_sha256": sha256_file(lock) if lock.exists() else None,
    }


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise ValueError(f"{path}: missing; is this a finished training run folder?")
    return json.loads(path.read_text(encoding="utf-8"))


def build_record(
    layout: DataLayout, run_folder: Path, *, recipe: str | None = None, orchestration: dict | None = None
) -> dict:
    """The provenance record of a finished run folder (see the module docstring).

    orchestration: what the orchestrator recorded about the run (its run id and the data versions of
    the inputs it passed); stored as given, and checked against the record's own datasets by callers.
    """
    run_folder = Path(run_folder)
    run = _read_json(run_folder / RUN)
    if run.get("status") != "finished":
        raise ValueError(f"{run_folder / RUN}: says {run.get('status')!r}; only finished runs are sealed")
    evaluation = _read_json(run_folder / EVALUATION)
    steps = [
        r for r in map(json.loads, (run_folder / METRICS).read_text().splitlines()) if r.get("event") is None
    ]
    upstream = run["upstream"]
    shards_folder = version_folder(layout.datasets, upstream[TOKEN_SHARDS])
    index = read_index(shards_folder)
    stages_manifest = load_manifest(version_folder(layout.datasets, upstream[CURRICULUM_STAGES]))
    stages = []
    for stage in sorted(index["stages"], key=lambda s: s["stage_index"]):
        use = run.get("sequence_use", {}).get(Path(stage["path"]).name, {})
        stages.append(
            {
                "stage": stage["stage"],
                "index": stage["stage_index"],
                "path": stage["path"],
                "sequences": stage["num_sequences"],
                "tokens": stage["num_tokens"],
                "sequences_trained": use.get("sequences_trained"),
                "held_out_sequences": use.get("held_out_sequences"),
                "dataset_versions": list(stages_manifest.parents),
            }
        )
    checkpoint_files = {k: v for k, v in run["files"].items() if k.startswith(f"{CHECKPOINTS}/")}
    latest = (run_folder / CHECKPOINTS / LATEST).read_text().strip()
    run_config = run["run_config"]
    return {
        "format": RECORD_FORMAT,
        "model": {
            "recipe": recipe,
            "config": run_config["model"],
            "parameters": run.get("parameters"),
        },
        "export": {"path": EXPORT_FILE, "sha256": run["files"].get(EXPORT_FILE)},
        "checkpoint": {"latest": latest, "step": run["steps_done"], "files": checkpoint_files},
        "datasets": {
            TOKEN_SHARDS: upstream[TOKEN_SHARDS],
            TOKENIZER: upstream[TOKENIZER],
            CURRICULUM_STAGES: upstream[CURRICULUM_STAGES],
            "stages": stages,
        },
        "code": code_state(),
        "config": {"run": run_config, "deepspeed": run.get("deepspeed_config")},
        "dependencies": dependency_state(),
        "hardware": run.get("environment"),
        "seeds": {"train": run_config["train"]["seed"], TOKEN_SHARDS: index.get("seed")},
        "metrics": {
            "steps": len(steps),
            "first_loss": steps[0]["lm_loss"] if steps else None,
            "final_loss": steps[-1]["lm_loss"] if steps else None,
            "tokens_per_s_median": sorted(r["tokens_per_s"] for r in steps)[len(steps) // 2]
            if steps
            else None,
            "perplexity_after_stage": [
                {"stage": e["stage"], "overall": e["overall"]["perplexity"], "by_language": e["perplexity"]}
                for e in evaluation["after_stage"]
            ],
        },
        "orchestration": orchestration or {},
    }


def seal_model(
    layout: DataLayout, run_folder: Path, record: dict, *, asset: str = TRAINED_MODEL
) -> tuple[Manifest, int | None]:
    """Write ``record`` into the run folder as provenance.json, seal the folder (it is moved) into
    ``datasets/<asset>/<id>``, and pin it in the ledger. Returns (manifest, ledger index); the index
    is None when the same bytes were already sealed (the run folder is then removed)."""
    if asset not in MODEL_ASSETS:
        raise ValueError(f"{asset!r}: a model version's asset is one of {MODEL_ASSETS}")
    run_folder = Path(run_folder)
    write_record(run_folder / RECORD, record)
    datasets = record["datasets"]
    parents = tuple(
        r for r in (datasets.get(TOKEN_SHARDS), datasets.get(TOKENIZER), datasets.get(CURRICULUM_STAGES)) if r
    ) + tuple(record.get("parents", ()))
    staging = layout.work / STAGING / f"{asset}-{run_folder.name}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    import shutil  # here, not at the top: see code_state

    shutil.move(run_folder, staging)
    manifest, created = seal(
        staging,
        layout.datasets,
        asset=asset,
        snapshot=None,
        parents=parents,
        config=record["config"],
        code_version=(record["code"].get("commit") or record["code"].get("source_sha256") or "")[:16],
        stats={"metrics": record["metrics"], "parameters": record["model"].get("parameters")},
    )
    from records.catalog import add_version_to_catalog
    from records.pins import ensure_pinned
    from records.retrain_state import record_model

    folder = layout.datasets / asset / manifest.version_id
    payload = {
        "model_version": manifest.ref,
        "kind": "finetune" if asset == FINETUNED_MODEL else "pretrain",
        "parents": list(manifest.parents),
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "record_sha256": sha256_file(folder / RECORD),
        "model_sha256": record["export"].get("sha256"),
    }
    # Also when the same bytes were sealed before: a retry pins what a failed run sealed.
    index = ensure_pinned(layout, manifest.ref, MODEL_TRAINED, payload, sealed_now=created)
    record_model(layout, manifest)  # also when reused: it is the model trained last
    if not created:
        return manifest, None
    add_version_to_catalog(layout, manifest.ref)
    return manifest, index


def load_record(folder: Path) -> dict:
    """The provenance record of a model version folder."""
    path = Path(folder) / RECORD
    if not path.exists():
        raise ValueError(f"{path}: missing; {folder} is not a model version")
    return json.loads(path.read_text(encoding="utf-8"))


def model_versions(layout: DataLayout) -> dict[str, Manifest]:
    """``asset/version_id`` -> manifest of every model version (trained or fine-tuned) in the data folder."""
    from records.versions import load_versions

    return {ref: m for ref, m in load_versions(layout).items() if m.asset in MODEL_ASSETS}


def metrics_lines(records: Iterable[dict]) -> bytes:
    """Training metrics as ``metrics.jsonl`` holds them (sealed into the model version): one canonical
    JSON line per record. A float that is not finite (a diverged loss) is written as null, since the
    canonical form has no NaN or infinity."""

    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    return b"".join(canonical_json(finite(r)) + b"\n" for r in records)
