"""Terminal text for the audit answers: the lineage tree and the membership trail."""

from __future__ import annotations

from provenance.audit.contains import DROPPED, IN, Membership, Step
from provenance.audit.lineage import Node, config_summary
from provenance.audit.model_use import (
    NOT_STAGED,
    STAGED_NOT_TRAINED,
    STAGED_USE_UNKNOWN,
    USE_UNKNOWN_TEXT,
    ModelMembership,
    StageUse,
)

SHORT = 12  # hex digits of an id or hash shown on the terminal; --json carries the full values


def _short_ref(ref: str) -> str:
    asset, _, version = ref.partition("/")
    return f"{asset}/{version[:SHORT]}"


def lineage_tree(root: Node) -> str:
    """The lineage as an indented tree: each version, its step's facts, then its inputs."""
    lines: list[str] = []
    _node_lines(root, "", "", lines, set())
    return "\n".join(lines)


def _node_lines(node: Node, first: str, rest: str, lines: list[str], shown: set[str]) -> None:
    if node.manifest is None:
        lines.append(f"{first}{_short_ref(node.ref)}  MISSING: no such version folder")
        return
    m = node.manifest
    if node.ref in shown:
        lines.append(f"{first}{_short_ref(node.ref)}  (shown above)")
        return
    shown.add(node.ref)
    kept = m.stats.get("kept", {}).get("documents")
    excluded = m.stats.get("excluded", {}).get("documents")
    ledger = f"ledger entry {node.ledger_index}" if node.ledger_index is not None else "NOT IN LEDGER"
    lines.append(f"{first}{m.asset}/{m.short_id}  created {m.created_at}  code {m.code_version}  {ledger}")
    lines.append(f"{rest}  version id {m.version_id}")
    lines.append(f"{rest}  manifest sha256 {node.manifest_sha256}  ({len(m.files)} files)")
    lines.append(f"{rest}  documents: {kept} kept, {excluded} removed" + _by_reason(m.stats))
    lines.append(f"{rest}  config: {config_summary(m.config)}")
    children: list[tuple[str, object]] = [("version", p) for p in node.parents]
    if node.snapshot_folder is not None:
        children.append(("snapshot", node))
    for i, (kind, child) in enumerate(children):
        last = i == len(children) - 1
        branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
        if kind == "version":
            _node_lines(child, rest + branch, rest + indent, lines, shown)
        else:
            _snapshot_lines(child, rest + branch, rest + indent, lines)


def _by_reason(stats: dict) -> str:
    reasons = stats.get("excluded", {}).get("by_reason", {})
    if not reasons:
        return ""
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
    more = f", … {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return " (" + ", ".join(f"{r} {n}" for r, n in top) + more + ")"


def _snapshot_lines(node: Node, first: str, rest: str, lines: list[str]) -> None:
    files = node.snapshot_files
    state = f"{len(files)} files" if files else "MISSING or empty"
    lines.append(f"{first}snapshot {node.manifest.snapshot}: {node.snapshot_folder}/  ({state})")
    for i, f in enumerate(files):
        branch = "└── " if i == len(files) - 1 else "├── "
        lines.append(f"{rest}{branch}{f.path}  {f.bytes} bytes  sha256 {f.sha256}")


def membership_text(result: Membership) -> str:
    """The answer first (IN / NOT IN), then each document's trail through the versions."""
    ((kind, value),) = result.query.items()
    targets = len(result.targets)
    if result.status == IN:
        head = f"IN: {kind} {value!r} is kept in {_count_kept(result)} of {targets} target version(s)"
    elif result.status == DROPPED:
        head = f"NOT IN (dropped): {kind} {value!r} was seen and removed before the target version(s)"
    else:
        head = f"NOT IN (never seen): no document with {kind} {value!r} in {targets} target version(s) or their inputs"
    lines = [head]
    for doc in result.documents:
        lines.append(f"  document {doc.doc_id}  sha256 {doc.sha256[:SHORT]}…  url {doc.url}  -> {doc.status}")
        for step in doc.trail:
            lines.append(f"    {_short_ref(step.version):<36} {_step_text(step)}")
    return "\n".join(lines)


def _count_kept(result: Membership) -> int:
    return len({v for d in result.documents for v in d.kept_in})


def _step_text(step: Step) -> str:
    if step.kept:
        if step.minhash_cluster_id and (step.minhash_cluster_size or 0) > 1:
            return f"kept  (cluster {step.minhash_cluster_id}, {step.minhash_cluster_size} documents)"
        return "kept"
    numbers = ", ".join(f"{k}={v}" for k, v in sorted(step.details.items()))
    return f"{DROPPED}: {step.reason}" + (f"  ({numbers})" if numbers else "")


def model_membership_text(result: ModelMembership) -> str:
    """The answer for one model (IN: trained on; NOT IN: staged but never trained on, dropped, or never
    seen), the stages that used the document, then its trail through the data versions."""
    ((kind, value),) = result.membership.query.items()
    model = _short_ref(result.model)
    if result.status == IN:
        head = f"IN {model}: {kind} {value!r} was trained on"
    elif result.status == STAGED_USE_UNKNOWN:
        head = f"STAGED, USE UNKNOWN {model}: {kind} {value!r} is {USE_UNKNOWN_TEXT} (the model recorded no sequence_use.parquet)"
    elif result.status == STAGED_NOT_TRAINED:
        head = f"NOT IN {model} (staged, never trained on): {kind} {value!r} is in its token shards only in held-out sequences or ones the run did not reach"
    elif result.status == NOT_STAGED:
        head = f"NOT IN {model} (not staged): {kind} {value!r} was kept by curation but selected for no stage of its curriculum"
    elif result.status == DROPPED:
        head = f"NOT IN {model} (dropped): {kind} {value!r} was removed before its training data"
    else:
        head = f"NOT IN {model} (never seen): no document with {kind} {value!r} in its training data or their inputs"
    lines = [head]
    for use in result.uses:
        lines.append(f"  document {use.doc_id}  sha256 {use.sha256[:SHORT]}…")
        lines += [f"    stage {s.stage:<12} {_stage_use_text(s)}" for s in use.stages]
    lines.append(membership_text(result.membership))
    return "\n".join(lines)


def _stage_use_text(s: StageUse) -> str:
    held = f"{s.copies} cop{'y' if s.copies == 1 else 'ies'} in {s.sequences} sequence(s)"
    if s.sequences_trained is None:
        return f"{held}: per-sequence use unknown"
    return f"{held}: {s.sequences_trained} trained on, {s.times_trained} draw(s); {s.held_out_sequences} held out"
