"""``apertus audit``: answers from the records alone (provenance.audit). Imports neither Dagster nor torch."""

from __future__ import annotations

import csv
import json
import sys

from records.assets import MODEL_ASSETS
from records.layout import DataLayout


def _format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(lines)


def print_query(sql: str, output: str = "table") -> int:
    """Print the result of a read-only query on the catalog; 0 on success, 2 on a refused, failed or
    timed-out query (the message says which)."""
    import duckdb

    from records.catalog import query

    layout = DataLayout.from_env()
    try:
        columns, rows = query(layout, sql)
    except (ValueError, OSError, duckdb.Error) as error:
        print(f"apertus audit sql: {error}", file=sys.stderr)
        return 2
    if output == "json":
        print(
            json.dumps(
                [dict(zip(columns, row, strict=True)) for row in rows], default=str, ensure_ascii=False
            )
        )
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(_format_table(columns, rows))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return 0


def _fail(command: str, error: Exception) -> int:
    print(f"apertus audit {command}: error: {error}", file=sys.stderr)
    return 2


def _errors() -> tuple[type[BaseException], ...]:
    """The failures reported as exit status 2. DuckDB's only if it was loaded: importing it just to
    name its error class would cost `contains` most of its start-up time."""
    import sqlite3

    duckdb = sys.modules.get("duckdb")
    return (ValueError, OSError, sqlite3.Error) + ((duckdb.Error,) if duckdb else ())


def print_contains(
    *, url: str | None, sha256: str | None, text: str | None, versions: list[str] | None, as_json: bool
) -> int:
    """Answer a membership question: 0 when the document is in, 1 when not (never seen or dropped), 2 on error."""
    from provenance.audit.contains import IN, contains
    from provenance.audit.render import membership_text

    try:
        result = contains(DataLayout.from_env(), url=url, sha256=sha256, text=text, targets=versions)
    except _errors() as error:
        return _fail("contains", error)
    print(json.dumps(result.to_dict(), ensure_ascii=False) if as_json else membership_text(result))
    return 0 if result.status == IN else 1


# `apertus audit contains --model`: 0 trained on, 1 not in, 2 error, and USE_UNKNOWN_EXIT when no model
# trained on it but one holds it in its staged data without a record of which sequences it drew.
USE_UNKNOWN_EXIT = 3


def print_model_contains(
    *, url: str | None, sha256: str | None, text: str | None, models: list[str] | None, as_json: bool
) -> int:
    """Answer for models (the named ones, or all when None), with provenance.audit.model_use's
    verdict: 0 when some model trained on the document; 3 (USE_UNKNOWN_EXIT) when none did but one
    holds it in its staged data and recorded no per-sequence use ("in the staged data; per-sequence
    use unknown"); 1 when none holds it (not staged, staged but never trained on, dropped, never
    seen); 2 on error."""
    from provenance.audit.contains import IN
    from provenance.audit.model_use import STAGED_USE_UNKNOWN, contains_in_model, model_refs
    from provenance.audit.render import model_membership_text
    from records.indexed_versions import IndexedVersions

    layout = DataLayout.from_env()
    try:
        with IndexedVersions(layout) as versions:  # opened once for the refs and every model's answer
            refs = model_refs(layout, models, versions)
            if not refs:
                raise ValueError(f"no model versions in {layout.datasets} (train one: `apertus train`)")
            results = [
                contains_in_model(layout, ref, url=url, sha256=sha256, text=text, versions=versions)
                for ref in refs
            ]
    except _errors() as error:
        return _fail("contains", error)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False))
    else:
        print("\n\n".join(model_membership_text(r) for r in results))
    statuses = {r.status for r in results}
    return 0 if IN in statuses else USE_UNKNOWN_EXIT if STAGED_USE_UNKNOWN in statuses else 1


def print_lineage(ref: str, *, prov: str | None, as_json: bool) -> int:
    """Print the lineage tree of a version (or its PROV-JSON); 0 on success, 2 on error."""
    from provenance.audit.lineage import lineage
    from provenance.audit.prov import to_prov
    from provenance.audit.render import lineage_tree

    try:
        root = lineage(DataLayout.from_env(), ref)
        if prov:
            document = json.dumps(to_prov(root), indent=2, ensure_ascii=False)
            if prov == "-":
                print(document)
                return 0
            with open(prov, "w", encoding="utf-8") as f:
                f.write(document + "\n")
    except _errors() as error:
        return _fail("lineage", error)
    if as_json:
        print(json.dumps(to_prov(root), ensure_ascii=False))
    else:
        print(lineage_tree(root))
        if root.manifest is not None and root.manifest.asset in MODEL_ASSETS:
            _print_history(root.ref)
    return 0


def _print_history(ref: str) -> None:
    """A model's family from the ledger: its base, fine-tuning runs, certifications and alias moves."""
    from provenance.certify import model_history

    history = model_history(DataLayout.from_env(), ref)
    print(f"\nledger history of {ref[:26]}… and its family ({len(history)} events):")
    for item in history:
        indent = "  " * item["depth"]
        print(
            f"{item['index']:>5}  {item['timestamp'][:19]}  {indent}{item['model_version'][:40]}  {item['detail']}"
        )


def print_diff(a: str, b: str, *, limit: int, as_json: bool) -> int:
    """Print the documents added and removed between two versions; 0 on success, 2 on error."""
    from provenance.audit.diff import diff, diff_text

    try:
        result = diff(DataLayout.from_env(), a, b, limit=limit)
    except _errors() as error:
        return _fail("diff", error)
    print(json.dumps(result.to_dict(), ensure_ascii=False) if as_json else diff_text(result))
    return 0


def print_verify(
    ref: str | None, *, as_json: bool, trusted_key: str | None = None, head: str | None = None
) -> int:
    """Re-hash and re-prove the records; 0 when all is intact, 1 naming each problem, 2 on error.

    trusted_key: a PEM public key file (or a key folder) to check every signature with, instead of
    the key stored in the data folder; head: a held head file (checkpoint) the log must extend.
    The output says which of the two were given and what is not proved without them."""
    from provenance.audit.verify import verify

    layout = DataLayout.from_env()
    try:
        report = verify(layout, ref)
        trust = _check_anchors(layout, trusted_key, head)
    except _errors() as error:
        return _fail("verify", error)
    ok = report.ok and trust.ok
    held = _hold_verified(layout, trust) if ok and trusted_key else None
    if as_json:
        result = report.to_dict() | {"ok": ok, "trust": trust.to_dict() | {"held_head_saved": held}}
        print(json.dumps(result, ensure_ascii=False))
        return 0 if ok else 1
    for problem in report.problems + trust.problems:
        print(problem)
    for note in report.notes:
        print(f"note: {note}")
    problems = len(report.problems) + len(trust.problems)
    state = "OK" if ok else f"FAILED: {problems} problem(s)"
    # One summary line, last, as before; it names the anchors, the details go to stderr.
    print(f"{state}: {len(report.versions)} dataset versions, {report.num_files} files, "
          f"{report.ledger_entries} ledger entries checked, {_anchors_line(trust)}")  # fmt: skip
    for line in trust.unproven:
        print(f"apertus audit verify: not proved: {line}", file=sys.stderr)
    if held:
        print(f"apertus audit verify: held head saved: {held} (pass it to --head next time)", file=sys.stderr)
    return 0 if ok else 1


def _anchors_line(trust) -> str:
    """What the signatures and the history were checked against, for the summary line."""
    if not trust.held_head:
        held = "no held head (a rewrite by whoever can write the data folder is not excluded)"
        if trust.key.startswith("the trusted key"):
            held = "no held head (removal of the latest entries with their heads is not excluded)"
    else:
        held = f"held head {trust.held_head}" + (" (the log extends it)" if trust.ok else "")
    return f"signatures against {trust.key}, {held}"


def _check_anchors(layout: DataLayout, trusted_key: str | None, head: str | None):
    """The trust anchors part of verify (records.ledger.trust); ValueError naming a bad file."""
    from pathlib import Path

    from records.keys import PUBLIC_KEY, read_held_head
    from records.ledger.trust import check_trust
    from records.signing import load_public_key

    key = None
    if trusted_key:
        path = Path(trusted_key)
        path = path / PUBLIC_KEY if path.is_dir() else path
        try:
            key = load_public_key(path.read_bytes())
        except (OSError, ValueError) as e:
            raise ValueError(f"--trusted-key {path}: not an Ed25519 public key in PEM ({e})") from None
        trusted_key = str(path)
    held = read_held_head(Path(head)) if head else None
    return check_trust(layout.ledger, key, held, trusted_key_source=trusted_key or "", held_source=head or "")


def _hold_verified(layout: DataLayout, trust) -> str | None:
    """After a verify that passed with a trusted key, keep its latest head as the held head (key folder)."""
    from records.identity import hold_head
    from records.keys import keys_folder
    from records.ledger import Ledger

    try:
        folder = keys_folder(layout)
    except ValueError:
        return None
    if trust.latest is None or not folder.is_dir():
        return None
    path, refused = hold_head(Ledger(layout.ledger), folder, trust.latest)
    return None if refused else str(path)


def print_head() -> int:
    """Print the latest signed head (a C2SP checkpoint note) to stdout and keep it as the held head in
    the key folder when its key signed it and the log extends the head held before; 0, 1 when it
    is not held for that reason, 2 on error. Messages go to stderr, so stdout is the note alone."""
    from records.identity import head_text, hold_head
    from records.keys import keys_folder, load_trusted_key
    from records.ledger import Ledger

    layout = DataLayout.from_env()
    ledger = Ledger(layout.ledger)
    try:
        head = ledger.tree_head()
        folder = keys_folder(layout)
        print(head_text(head), end="")
        if not folder.is_dir():
            print(
                f"apertus audit head: no key folder at {folder}: not held (`apertus init`)", file=sys.stderr
            )
            return 0
        if not head.verify(load_trusted_key(folder)):
            print(f"apertus audit head: not signed by the key in {folder}: not held", file=sys.stderr)
            return 1
        path, refused = hold_head(ledger, folder, head)
    except _errors() as error:
        return _fail("head", error)
    if refused:
        print(f"apertus audit head: not held: {path}: {refused}", file=sys.stderr)
        return 1
    print(f"apertus audit head: held in {path} (use it with `apertus audit verify --head`)", file=sys.stderr)
    return 0


def build_lookups(*, rebuild: bool) -> int:
    """Write the lookup files of every version that lacks them (all with ``rebuild``); 0 or 2."""
    from records.lookup_build import build_lookup, build_missing_lookups
    from records.versions import holds_documents, load_versions

    layout = DataLayout.from_env()
    try:
        versions = load_versions(layout)
        if rebuild:
            built = [
                build_lookup(layout, m, layout.datasets / ref) and ref
                for ref, m in sorted(versions.items())
                if holds_documents(m)
            ]
        else:
            built = build_missing_lookups(layout, versions)
    except _errors() as error:
        return _fail("index", error)
    print(f"lookup files written for {len(built)} of {len(versions)} dataset versions")
    if built:
        print("a lookup answers only under the root pinned in its version's ledger entry: "
              "run `apertus audit repin` to pin any new root")  # fmt: skip
    return 0


def build_audit_index() -> int:
    """Rewrite the audit index from every version's manifest and pinned lookup (records.audit_index_build)
    and pin it in a new ledger entry; 0 or 2."""
    from records.audit_index_build import rebuild_index

    try:
        count = rebuild_index(DataLayout.from_env())
    except _errors() as error:
        return _fail("index", error)
    print(f"audit index written for {count} versions and pinned in the ledger")
    return 0


def print_repin(*, as_json: bool) -> int:
    """Pin what an older or interrupted data folder left unpinned (provenance.audit.repin): 0 when
    every version is pinned, 1 naming those it would not pin, 2 on error."""
    from provenance.audit.repin import repin

    try:
        result = repin(DataLayout.from_env())
    except _errors() as error:
        return _fail("repin", error)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        for ref, index in sorted(result.pinned.items(), key=lambda item: item[1]):
            print(f"pinned {ref} late, at entry {index}")
        for problem in result.problems:
            print(problem)
        print(f"{len(result.pinned)} version(s) pinned, {result.markers} pin marker(s) written"
              + (f", {len(result.problems)} problem(s)" if result.problems else ""))  # fmt: skip
    return 1 if result.problems else 0
