"""SovereignTune records: the fine-tuning examples as a dataset version, the per-run Merkle tree of
their use, the sealed ``finetuned_model`` version and the membership proof of one example.

    finetune_examples/<id>/   examples.jsonl (the user's file, byte for byte)
    finetuned_model/<id>/     model.safetensors, provenance.json ("apertus.finetune-record/1"),
                              examples.jsonl, usage.jsonl, metrics.jsonl, evaluation.json, run.json

An example is one JSON object per line: {"prompt", "response"} (loss on the response only) or
{"text"}; any other field (``language``, ``id``) is kept and hashed with it. Its identity is the
sha256 of its canonical JSON (records.canonical.canonical_json). Each use of an example in training
is one line of usage.jsonl, the canonical JSON of {"example_sha256", "slot", "step"}; those lines in
order are the leaves of an RFC 6962 Merkle tree whose root (``examples_root``) is in the record and in
the ledger's ``model_trained`` entry, so one example's use is provable offline with records/merkle.py
and nothing else (docs/finetuning.md). Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from records.assets import FINETUNE_EXAMPLES, FINETUNED_MODEL
from records.canonical import canonical_json, write_record
from records.hashing import sha256_file
from records.layout import DataLayout, new_staging
from records.manifest import MANIFEST, Manifest, load_manifest, seal, version_folder
from records.merkle import inclusion_proof, leaf_hash, root_from_leaf_hashes, verify_inclusion
from records.models import EXPORT_FILE, RECORD, RUN, code_state, dependency_state, load_record
from records.pins import pin_dataset_version

__all__ = [
    "EXAMPLES_FILE",
    "USAGE_FILE",
    "RECORD_FORMAT",
    "Example",
    "read_examples",
    "example_sha256",
    "split_held_out",
    "usage_line",
    "usage_root",
    "seal_examples",
    "seal_finetune",
    "example_hash_of",
    "contains_example",
    "verify_example_proof",
]

# The files a fine-tuning adds to a model version's (records.models); spelled here only.
EXAMPLES_FILE = "examples.jsonl"
USAGE_FILE = "usage.jsonl"
FILE_NAMES = (EXAMPLES_FILE, USAGE_FILE)
RECORD_FORMAT = "apertus.finetune-record/1"
RUN_FORMAT = "apertus.finetune-run/1"
PROOF_FORMAT = "apertus.example-inclusion/1"


@dataclass(frozen=True)
class Example:
    """One line of an examples file: its 0-based line number, the object as given and its sha256."""

    line: int
    record: dict[str, Any]
    sha256: str

    @property
    def kind(self) -> str:
        return "text" if "text" in self.record else "prompt_response"

    @property
    def language(self) -> str:
        return str(self.record.get("language") or "unknown")


def example_sha256(record: dict[str, Any]) -> str:
    """sha256 of the example's canonical JSON (sorted keys, no whitespace, UTF-8): its identity."""
    return hashlib.sha256(canonical_json(record)).hexdigest()


def _check_example(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: an example is a JSON object, got {type(record).__name__}")
    has_pair = "prompt" in record or "response" in record
    if has_pair == ("text" in record):
        raise ValueError(f'{where}: give either "prompt" and "response", or "text" (got {sorted(record)})')
    fields = ("prompt", "response") if has_pair else ("text",)
    for name in fields:
        if not isinstance(record.get(name), str):
            raise ValueError(f"{where}: {name!r} must be a string")
    if not record.get("response" if has_pair else "text"):
        raise ValueError(f"{where}: {'response' if has_pair else 'text'} is empty; nothing to learn from")


def read_examples(path: str | Path) -> list[Example]:
    """Every example of a JSONL file, validated; blank lines are skipped. ValueError naming the file
    and line for bad JSON, a wrong shape, or an example repeated (its line and the first one)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such examples file")
    examples, seen = [], {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not raw.strip():
            continue
        where = f"{path} line {number + 1}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e.msg})") from None
        _check_example(record, where)
        sha = example_sha256(record)
        if sha in seen:
            raise ValueError(f"{where}: repeats the example of line {seen[sha] + 1}; remove one")
        seen[sha] = number
        examples.append(Example(number, record, sha))
    if len(examples) < 2:
        raise ValueError(f"{path}: {len(examples)} examples; need at least 2 (one to train, one held out)")
    return examples


def split_held_out(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """(train, held_out): an example is held out when sha256("held-out:" + its sha256) falls below
    fraction of the range (so the split follows the content, not the file order), with at least one
    example on each side: the lowest-ranked one is held out when none is, the highest is trained on."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction {fraction}; use 0 < fraction < 1")
    rank = {e.sha256: hashlib.sha256(f"held-out:{e.sha256}".encode()).digest()[:8] for e in examples}
    limit = int(fraction * (1 << 64))
    held = {s for s, r in rank.items() if int.from_bytes(r, "big") < limit}
    ordered = sorted(rank, key=rank.get)
    if not held:
        held = {ordered[0]}
    if len(held) == len(examples):
        held.discard(ordered[-1])
    return [e for e in examples if e.sha256 not in held], [e for e in examples if e.sha256 in held]


def usage_line(example_sha: str, step: int, slot: int) -> bytes:
    """The leaf data of one use: canonical JSON of {"example_sha256", "slot", "step"} (a usage.jsonl line)."""
    return canonical_json({"example_sha256": example_sha, "slot": slot, "step": step})


def usage_root(lines: list[bytes]) -> str:
    """Hex RFC 6962 root over the usage lines in order (the run's ``examples_root``)."""
    return root_from_leaf_hashes([leaf_hash(line) for line in lines]).hex()


def seal_examples(layout: DataLayout, path: str | Path) -> tuple[Manifest, bool]:
    """Seal an examples file (validated first) as a ``finetune_examples`` version holding it byte for
    byte as examples.jsonl; a new version gets its ``dataset_version_created`` ledger entry. Returns
    (manifest, created): the same file again is the same version, created False."""
    path = Path(path)
    examples = read_examples(path)
    staging = new_staging(layout, FINETUNE_EXAMPLES)
    shutil.copyfile(path, staging / EXAMPLES_FILE)
    by_kind: dict[str, int] = {}
    by_language: dict[str, int] = {}
    for e in examples:
        by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
        by_language[e.language] = by_language.get(e.language, 0) + 1
    manifest, created = seal(
        staging,
        layout.datasets,
        asset=FINETUNE_EXAMPLES,
        snapshot=None,
        config={"source_name": path.name},
        stats={
            "examples": len(examples),
            "by_kind": by_kind,
            "by_language": dict(sorted(by_language.items())),
        },
        counts={EXAMPLES_FILE: (len(examples), None)},
    )
    pin_dataset_version(layout, manifest, sealed_now=created)  # a retry pins what a failed run sealed
    return manifest, created


def seal_finetune(layout: DataLayout, run_dir: str | Path, examples_ref: str) -> tuple[Manifest, int | None]:
    """Seal a fine-tuning run folder (what ``python -m model.finetune`` wrote) as a ``finetuned_model``
    version with provenance.json, parents (base model, examples version), and append its
    ``model_trained`` ledger entry (kind "finetune"). Returns (manifest, ledger index; None when the
    identical version existed already). ValueError when the run does not match the examples version
    or its usage tree does not give the recorded root."""
    run_dir = Path(run_dir)
    run = json.loads((run_dir / RUN).read_text(encoding="utf-8"))
    examples_folder = version_folder(layout.datasets, examples_ref)
    examples_manifest = load_manifest(examples_folder)
    file_sha = sha256_file(examples_folder / EXAMPLES_FILE)
    if run["examples"]["file_sha256"] != file_sha:
        raise ValueError(
            f"{run_dir / RUN}: trained on examples with sha256 "
            f"{run['examples']['file_sha256'][:16]}…, "
            f"but {examples_manifest.ref} holds {file_sha[:16]}…"
        )
    lines = (run_dir / USAGE_FILE).read_bytes().splitlines()
    if usage_root(lines) != run["examples"]["root"]:
        raise ValueError(f"{run_dir / USAGE_FILE}: its Merkle root differs from run.json's examples root")
    base = run["base"]
    model_sha = sha256_file(run_dir / EXPORT_FILE)
    record = {
        "format": RECORD_FORMAT,
        "kind": "finetune",
        "base": base,
        "model": run["model"],
        "export": {"path": EXPORT_FILE, "sha256": model_sha},
        "examples": {**run["examples"], "dataset_version": examples_manifest.ref},
        "config": run["config"],
        "gates": run["gates"],
        "certifiable": run["certifiable"],
        "metrics": run["metrics"],
        "seeds": {"seed": run["config"]["seed"]},
        "hardware": run["hardware"],
        "code": code_state(),
        "dependencies": dependency_state(),
    }
    staging = new_staging(layout, FINETUNED_MODEL)
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        target = staging / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    write_record(staging / RECORD, record)
    manifest, created = seal(
        staging,
        layout.datasets,
        asset=FINETUNED_MODEL,
        snapshot=None,
        parents=(base["model_version"], examples_manifest.ref),
        config=run["config"],
        code_version=(record["code"].get("commit") or record["code"].get("source_sha256") or "")[:16],
        stats={"certifiable": run["certifiable"], "examples": run["examples"]["count"], **run["metrics"]},
    )
    from records.ledger import MODEL_TRAINED
    from records.pins import ensure_pinned

    folder = layout.datasets / manifest.ref
    payload = {
        "model_version": manifest.ref,
        "kind": "finetune",
        "parents": list(manifest.parents),
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "record_sha256": sha256_file(folder / RECORD),
        "model_sha256": model_sha,
        "examples_root": run["examples"]["root"],
        "certifiable": run["certifiable"],
    }
    # Also when the same bytes were sealed before: a retry pins what a failed run sealed.
    index = ensure_pinned(layout, manifest.ref, MODEL_TRAINED, payload, sealed_now=created)
    return manifest, index if created else None


def hardware_record() -> dict:
    """Where the run ran: machine, OS and Python (the model side adds the torch device)."""
    return {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version()}


def example_hash_of(example: str | Path) -> str:
    """The sha256 an example is known by: a 64-hex string as given, or the one JSON example in a file
    (a .json object or a one-line .jsonl). ValueError naming the file otherwise."""
    text = str(example)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower()):
        return text.lower()
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"{text!r}: neither a 64-hex example sha256 nor an example file")
    body = path.read_text(encoding="utf-8").strip()
    lines = [line for line in body.splitlines() if line.strip()]
    try:
        record = json.loads(body) if len(lines) != 1 else json.loads(lines[0])
    except json.JSONDecodeError:
        raise ValueError(
            f"{path}: holds {len(lines)} lines, not one JSON example; pass one example"
        ) from None
    _check_example(record, str(path))
    return example_sha256(record)


def contains_example(
    layout: DataLayout, example_file_or_hash: str | Path, run_ref: str
) -> tuple[bool, dict | None]:
    """Was this example used in the training steps of fine-tuning run ``run_ref``? (True, an inclusion
    proof of its first use) or (False, None). The proof (JSON-ready) holds the usage line (the leaf),
    its index, the tree size, the audit path and the root, and is checked by verify_example_proof;
    ValueError when the run's usage.jsonl no longer gives its recorded root."""
    sha = example_hash_of(example_file_or_hash)
    folder = version_folder(layout.datasets, run_ref)
    record = load_record(folder)
    if record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{folder / RECORD}: not a fine-tuning record ({record.get('format')!r})")
    lines = (folder / USAGE_FILE).read_bytes().splitlines()
    hashes = [leaf_hash(line) for line in lines]
    root = root_from_leaf_hashes(hashes).hex()
    if root != record["examples"]["root"]:
        raise ValueError(f"{folder / USAGE_FILE}: Merkle root {root[:16]}… differs from the recorded root")
    uses = [i for i, line in enumerate(lines) if json.loads(line)["example_sha256"] == sha]
    if not uses:
        return False, None
    index = uses[0]
    return True, {
        "format": PROOF_FORMAT,
        "run": f"{FINETUNED_MODEL}/{folder.name}",
        "example_sha256": sha,
        "leaf": lines[index].decode(),
        "leaf_index": index,
        "tree_size": len(lines),
        "audit_path": [p.hex() for p in inclusion_proof(hashes, index)],
        "root": root,
        "uses": len(uses),
    }


def verify_example_proof(proof: dict, example_sha: str | None = None, root: str | None = None) -> bool:
    """True iff the proof's leaf names the example (example_sha when given) and hashes, with its audit
    path, to its root (root when given: the ``examples_root`` taken from the record or the ledger)."""
    try:
        leaf = proof["leaf"].encode()
        named = json.loads(leaf)["example_sha256"]
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        expected_root = bytes.fromhex(root or proof["root"])
    except (KeyError, TypeError, ValueError):
        return False
    if named != proof.get("example_sha256") or (example_sha is not None and named != example_sha):
        return False
    return verify_inclusion(leaf_hash(leaf), proof["leaf_index"], proof["tree_size"], path, expected_root)
