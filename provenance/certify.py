"""Certification, aliases and rollback of model versions, all as ledger events.

    model_certified  {model_version, kind, by, manifest_sha256, record_sha256, model_sha256, gates, ...}
    alias_moved      {alias, model_version, previous, by}
    rollback         {alias, from, to, certified_at, by}

A certification is an attestation signed by the ledger: its entry is covered by the Ed25519-signed tree
head written with it. ``certify`` appends one only after re-hashing the version's files against its
manifest, finding its ``model_trained`` entry (same manifest and model hashes), re-checking every gate of
its record from the recorded numbers and verifying the whole ledger. An alias (``certified``,
``production``, any name) is the ``model_version`` of its last ``alias_moved`` event and can only name a
certified version. ``rollback`` moves an alias back to an earlier certified version after the same
re-checks plus the hashes named in its certification, so a tampered or uncertified target is refused
and what the alias serves is bit for bit what was certified (``materialize_alias``). Imports no torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from records.assets import MODEL_ASSETS
from records.finetune import RECORD_FORMAT
from records.hashing import sha256_file
from records.layout import DataLayout
from records.ledger import ALIAS_MOVED, MODEL_CERTIFIED, MODEL_TRAINED, ROLLBACK, Ledger, LedgerEntry
from records.ledger.format import ENTRIES
from records.manifest import MANIFEST, verify_version, version_folder
from records.models import EXPORT_FILE, RECORD, load_record

__all__ = [
    "MODEL_ASSETS",
    "resolve_model",
    "gate_problems",
    "certification",
    "certify",
    "alias_target",
    "aliases",
    "set_alias",
    "rollback",
    "materialize_alias",
    "model_history",
]

MODEL_EVENTS = (MODEL_TRAINED, MODEL_CERTIFIED, ALIAS_MOVED, ROLLBACK)


def resolve_model(layout: DataLayout, ref: str) -> tuple[str, Path]:
    """(full ref, folder) of a model version named ``asset/<id or unique prefix>``; ValueError otherwise."""
    folder = version_folder(layout.datasets, ref)
    asset = folder.parent.name
    if asset not in MODEL_ASSETS:
        raise ValueError(f"{ref!r} is a {asset} version, not a model ({' or '.join(MODEL_ASSETS)})")
    return f"{asset}/{folder.name}", folder


def _events(layout: DataLayout, types=MODEL_EVENTS) -> list[LedgerEntry]:
    return [e for e in Ledger(layout.ledger).entries() if e.event_type in types]


def gate_problems(record: dict) -> list[str]:
    """What keeps a fine-tuning record's gates from certifying: a gate that failed, or one whose
    recorded verdict the recorded numbers do not support (limit = base * (1 + margin), value <= limit)."""
    problems = []
    gates = record.get("gates")
    if not isinstance(gates, dict) or not gates:
        return ["the record holds no gates"]
    for name, gate in sorted(gates.items()):
        checks = [(name, gate)] + [(f"{name}[{k}]", v) for k, v in sorted(gate.get("languages", {}).items())]
        for label, g in checks:
            if "base" not in g:
                continue
            limit = g["base"] * (1 + gate["margin"])
            if g["limit"] != limit or g["passed"] != (g["finetuned"] <= limit):
                problems.append(f"gate {label}: recorded verdict does not follow from its numbers")
        if not gate.get("passed") or (gate.get("languages") is not None and not gate["languages"]):
            problems.append(f"gate {name} failed: {_describe(gate)}")
    return problems


def _describe(gate: dict) -> str:
    if "languages" in gate:
        bad = [
            f"{k} {v['finetuned']:.2f} > {v['limit']:.2f}"
            for k, v in gate["languages"].items()
            if not v["passed"]
        ]
        return "perplexity " + (", ".join(bad) or "measured on no language")
    return (
        f"{gate['finetuned']:.4f} > limit {gate['limit']:.4f} "
        f"(base {gate['base']:.4f}, margin {gate['margin']})"
    )


def _integrity_problems(layout: DataLayout, ref: str, folder: Path, ledger: Ledger) -> list[str]:
    """The version's files against its manifest, its model_trained entry, and the whole ledger."""
    problems = verify_version(folder)
    trained = [
        e for e in ledger.entries() if e.event_type == MODEL_TRAINED and e.payload.get("model_version") == ref
    ]
    if not trained:
        problems.append(f"{ref}: no model_trained entry in {ledger.root / ENTRIES}")
    else:
        payload = trained[-1].payload
        if payload.get("manifest_sha256") != sha256_file(folder / MANIFEST):
            problems.append(
                f"{folder / MANIFEST}: differs from the manifest entry {trained[-1].index} recorded"
            )
        if payload.get("model_sha256") != sha256_file(folder / EXPORT_FILE):
            problems.append(
                f"{folder / EXPORT_FILE}: differs from the model entry {trained[-1].index} recorded"
            )
    problems += [f"{ledger.root}/{p}" for p in ledger.verify()]
    return problems


def certification(layout: DataLayout, ref: str) -> LedgerEntry | None:
    """The latest ``model_certified`` entry of a model version (full ref), or None."""
    found = [e for e in _events(layout, (MODEL_CERTIFIED,)) if e.payload.get("model_version") == ref]
    return found[-1] if found else None


def certify(layout: DataLayout, ref: str, *, by: str) -> LedgerEntry:
    """Certify a model version (see the module docstring) and return its ``model_certified`` entry; an
    already certified version returns its existing entry. ValueError listing every problem otherwise.
    A trained_model has no gates (its record is checked for integrity only); a finetuned_model's
    gates must all have passed."""
    ref, folder = resolve_model(layout, ref)
    ledger = Ledger(layout.ledger)
    problems = _integrity_problems(layout, ref, folder, ledger)
    record = load_record(folder)
    finetuned = record.get("format") == RECORD_FORMAT
    if finetuned:
        problems += gate_problems(record)
    if problems:
        raise ValueError(f"{ref} cannot be certified:\n  " + "\n  ".join(problems))
    existing = certification(layout, ref)
    if existing is not None:
        return existing
    payload = {
        "model_version": ref,
        "kind": "finetune" if finetuned else "pretrain",
        "by": by,
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "record_sha256": sha256_file(folder / RECORD),
        "model_sha256": sha256_file(folder / EXPORT_FILE),
        "gates": {k: g["passed"] for k, g in record.get("gates", {}).items()} if finetuned else {},
    }
    if finetuned:
        payload["examples_root"] = record["examples"]["root"]
        payload["base"] = record["base"]["model_version"]
    return ledger.append(MODEL_CERTIFIED, payload)


def aliases(layout: DataLayout) -> dict[str, str]:
    """alias -> the model version of its last alias_moved event."""
    return {e.payload["alias"]: e.payload["model_version"] for e in _events(layout, (ALIAS_MOVED,))}


def alias_target(layout: DataLayout, alias: str) -> str | None:
    """The model version an alias names now (None when it was never set)."""
    return aliases(layout).get(alias)


def _certified_target(layout: DataLayout, ref: str, ledger: Ledger) -> tuple[str, Path, LedgerEntry]:
    """Re-check a target: integrity, a certification, and the certified hashes still on disk."""
    ref, folder = resolve_model(layout, ref)
    cert = certification(layout, ref)
    if cert is None:
        raise ValueError(
            f"{ref} is not certified (no model_certified entry); run `apertus certify {ref}` first"
        )
    problems = _integrity_problems(layout, ref, folder, ledger)
    for name, path in (("manifest_sha256", folder / MANIFEST), ("model_sha256", folder / EXPORT_FILE)):
        if path.exists() and sha256_file(path) != cert.payload[name]:
            problems.append(f"{path}: differs from the {name} certified in entry {cert.index}")
    if problems:
        raise ValueError(f"{ref} is refused:\n  " + "\n  ".join(problems))
    return ref, folder, cert


def set_alias(layout: DataLayout, alias: str, ref: str, *, by: str) -> LedgerEntry:
    """Point alias at a certified model version (re-checked first); returns the alias_moved entry."""
    ledger = Ledger(layout.ledger)
    ref, _, _ = _certified_target(layout, ref, ledger)
    payload = {"alias": alias, "model_version": ref, "previous": alias_target(layout, alias), "by": by}
    return ledger.append(ALIAS_MOVED, payload)


def rollback(
    layout: DataLayout, alias: str, to_ref: str, *, by: str = "apertus"
) -> tuple[LedgerEntry, LedgerEntry]:
    """Move alias back to to_ref, which must be certified, intact (its files, its certified hashes) in a
    ledger that verifies; appends ``rollback`` then ``alias_moved`` in one batch (consecutive entries under
    one signed tree head, so a crash never leaves a rollback without its alias move) and returns both
    entries. ValueError naming the reason when the target is refused or the alias was never set."""
    ledger = Ledger(layout.ledger)
    current = alias_target(layout, alias)
    if current is None:
        raise ValueError(f"alias {alias!r} was never set; nothing to roll back (apertus alias set)")
    ref, _, cert = _certified_target(layout, to_ref, ledger)
    back, moved = ledger.append_many(
        [
            (ROLLBACK, {"alias": alias, "from": current, "to": ref, "certified_at": cert.index, "by": by}),
            (ALIAS_MOVED, {"alias": alias, "model_version": ref, "previous": current, "by": by}),
        ]
    )
    return back, moved


def materialize_alias(layout: DataLayout, alias: str, dest: str | Path) -> Path:
    """Copy the alias's model.safetensors to dest after checking its sha256 against the certification
    (and again the copy); returns dest. ValueError when the alias is unset or the file differs."""
    ref = alias_target(layout, alias)
    if ref is None:
        raise ValueError(f"alias {alias!r} was never set")
    _, folder = resolve_model(layout, ref)
    cert = certification(layout, ref)
    if cert is None:
        raise ValueError(f"alias {alias!r} names {ref}, which is not certified")
    expected = cert.payload["model_sha256"]
    if sha256_file(folder / EXPORT_FILE) != expected:
        raise ValueError(
            f"{folder / EXPORT_FILE}: sha256 differs from the certified {expected[:16]}… (entry {cert.index})"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / EXPORT_FILE, dest)
    if sha256_file(dest) != expected:
        raise ValueError(f"{dest}: the copy's sha256 differs from the certified one")
    return dest


def _root_of(layout: DataLayout, ref: str) -> str:
    """The trained_model a model version descends from through fine-tuning records' base."""
    for _ in range(1000):
        folder = version_folder(layout.datasets, ref)
        base = load_record(folder).get("base")
        if not isinstance(base, dict) or "model_version" not in base:
            return ref
        ref = base["model_version"]
    raise AssertionError(f"{ref}: fine-tuning chain too long")


def model_history(layout: DataLayout, ref: str) -> list[dict]:
    """The family of a model version in ledger order: the pretrained root, every fine-tuning run that
    descends from it, their certifications, alias moves and rollbacks. Each item: {"index",
    "timestamp", "event", "model_version", "base", "depth", "detail"}; depth is 0 for the root, 1 for a
    fine-tune of it, and so on (for an indented rendering)."""
    ref, _ = resolve_model(layout, ref)
    root = _root_of(layout, ref)
    events = _events(layout)
    base_of: dict[str, str | None] = {}
    for e in events:
        if e.event_type == MODEL_TRAINED:
            parents = e.payload.get("parents", [])
            finetune = e.payload.get("kind") == "finetune"
            base_of[e.payload["model_version"]] = parents[0] if finetune and parents else None

    def depth(version: str) -> int | None:
        d = 0
        while version != root:
            version = base_of.get(version)
            if version is None:
                return None
            d += 1
        return d

    history = []
    for e in events:
        p = e.payload
        version = p.get("model_version") or p.get("to")
        d = depth(version) if version else None
        if d is None:
            continue
        if e.event_type == MODEL_TRAINED:
            detail = (
                f"fine-tuned, examples root {p['examples_root'][:16]}…"
                if p.get("kind") == "finetune"
                else "trained"
            )
        elif e.event_type == MODEL_CERTIFIED:
            detail = f"certified by {p.get('by')}; model sha256 {p['model_sha256'][:16]}…"
        elif e.event_type == ALIAS_MOVED:
            detail = f"alias {p['alias']} -> here (was {p.get('previous')})"
        else:
            detail = f"rollback of {p['alias']} from {p['from']}"
        history.append(
            {
                "index": e.index,
                "timestamp": e.timestamp,
                "event": e.event_type,
                "model_version": version,
                "base": base_of.get(version),
                "depth": d,
                "detail": detail,
            }
        )
    return history
