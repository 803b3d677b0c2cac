"""``apertus compliance``: record erasure and opt-out requests, show where they apply, and write the
documents regulators ask for. Like ``apertus audit``, it never imports torch or Dagster.

    apertus compliance request --url|--domain|--sha256|--regex VALUE [--note REF]
    apertus compliance impact REQUEST_ID_OR_PREFIX [--json]
    apertus compliance report --out DIR [--model REF] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import sys

from records.layout import DataLayout


def _request(args: argparse.Namespace) -> int:
    from records.requests import record_request

    kind = next(k for k in ("url", "domain", "sha256", "regex") if getattr(args, k) is not None)
    request = record_request(DataLayout.from_env(), kind, getattr(args, kind), note=args.note)
    print(f"recorded erasure request {request.request_id}")
    print(f"  {request.kind} {request.value!r}, {request.requested_at}, ledger entry {request.ledger_index}")
    print(f"  where it applies: apertus compliance impact {request.request_id[:12]}")
    print("  the next curation of every snapshot leaves its documents out (apertus curate --snapshot NAME)")
    return 0


def _impact(args: argparse.Namespace) -> int:
    from provenance.erasure import impact
    from records.requests import find_request, recorded_entries

    layout = DataLayout.from_env()
    request = find_request(layout, args.request)
    entries = recorded_entries(layout, request.request_id)
    if len(entries) > 1:  # older code could record one request twice; it is still one request
        print(
            f"note: request {request.request_id[:12]} is recorded {len(entries)} times (ledger entries "
            f"{', '.join(map(str, entries))}); the first, entry {entries[0]}, is shown",
            file=sys.stderr,
        )
    result = impact(layout, request)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, sort_keys=True))
        return 0
    print_impact(result)
    return 0


def print_impact(result, log=print) -> None:
    """The impact of a request as a person reads it: documents, versions, models."""
    from provenance.audit.model_use import STAGED_USE_UNKNOWN, USE_UNKNOWN_TEXT

    print = log  # noqa: A001  (every line goes to the caller's log)
    request = result.request
    print(f"erasure request {request.request_id[:12]}  {request.kind} {request.value!r}")
    print(
        f"  recorded {request.requested_at} (ledger entry {request.ledger_index})"
        + (f"; note: {request.note}" if request.note else "")
    )
    print(f"\nmatching documents: {len(result.documents)}")
    for doc in result.documents[:20]:
        print(f"  {doc['doc_id']}  sha256 {(doc['sha256'] or '')[:16]}  {doc['url'] or ''}")
    if len(result.documents) > 20:
        print(f"  ... and {len(result.documents) - 20} more (--json lists all)")
    print(f"\ndataset versions: {len(result.versions)} hold them; {len(result.kept_in)} keep them")
    for version in result.versions:
        kept = version.num_kept
        dropped: dict[str, int] = {}
        for d in version.documents:
            if not d.kept:
                label = f"{d.reason} (this request)" if d.request_id == request.request_id else d.reason
                label += "" if d.text_retained else ", text erased"
                dropped[label] = dropped.get(label, 0) + 1
        parts = ([f"kept {kept}"] if kept else []) + [
            f"excluded {n}: {label}" for label, n in sorted(dropped.items())
        ]
        print(
            f"  {version.asset}/{version.ref.split('/')[1][:12]}  ({version.snapshot or '-'})  "
            + "; ".join(parts)
        )
    print(f"\nmodels: {sum(m.contains for m in result.models)} trained on them")
    for model in result.models:
        staged = [d for d in model.documents if "stage" in d]
        sequences = sum(d["sequences"] for d in staged)
        via = [d["via"] for d in model.documents if "via" in d]
        if model.status == STAGED_USE_UNKNOWN:
            counts = f"{USE_UNKNOWN_TEXT}" + (f" ({sequences} sequences)" if staged else "")
        else:
            trained = sum(d["sequences_trained"] for d in staged)
            verdict = "trained on them" if model.contains else "staged but not trained on them"
            counts = f"{verdict}: {trained} of {sequences} sequences" if staged else verdict
        line = f"  {model.ref.split('/')[0]}/{model.ref.split('/')[1][:12]}  {counts}"
        print(line + (f"; through base model {', '.join(via)}" if via else ""))
    if result.tokenizers:
        print(
            "\ntokenizers trained on them: "
            + ", ".join(t.split("/")[0] + "/" + t.split("/")[1][:12] for t in result.tokenizers)
        )
    if result.suppressed_in:
        print(
            "\nsuppressed (left out, the exclusion row names this request) in: "
            + ", ".join(result.suppressed_in)
        )
    elif result.kept_in:
        print("\nnot yet suppressed: curate again to leave the documents out of the next versions")


def _report(args: argparse.Namespace) -> int:
    from provenance.compliance import load_compliance_config, write_documents
    from records.models import model_versions

    layout = DataLayout.from_env()
    model = args.model
    if model is None:
        models = model_versions(layout)
        if not models:
            raise ValueError(f"{layout.datasets}: no model version yet (train one with `apertus train`)")
        model = max(models, key=lambda ref: (models[ref].created_at, ref))
    written = write_documents(layout, model, args.out, load_compliance_config(args.config))
    print(f"wrote {len(written)} files for {model} into {args.out}:")
    for path in written:
        print(f"  {path}")
    return 0


def run_compliance_demo(layout: DataLayout, model_ref: str, log=print) -> list:
    """The demo's compliance part: record an erasure request for a document the model trained on,
    show its impact, and write the compliance documents into ``<data>/reports/<model id>/``.
    Returns the files written."""
    from provenance.audit.model_use import trained_document
    from provenance.compliance import write_documents
    from provenance.erasure import impact
    from records.requests import record_request
    from records.versions import load_versions, resolve

    model_ref = resolve(load_versions(layout), model_ref)
    doc_id, url = trained_document(layout, model_ref)
    log(f"\n== compliance: an erasure request for {url} (document {doc_id})")
    request = record_request(layout, "url", url, note="apertus demo")
    print_impact(impact(layout, request), log=log)
    out = layout.root / "reports" / model_ref.split("/")[1][:12]
    written = write_documents(layout, model_ref, out)
    log(f"\n== compliance documents for {model_ref.split('/')[0]}/{model_ref.split('/')[1][:12]} in {out}:")
    for path in written:
        log(f"   {path.name}")
    return written


def add_commands(commands) -> None:
    """Add ``compliance`` and its subcommands to the top-level subparsers ``commands``."""
    compliance = commands.add_parser(
        "compliance", help="erasure and opt-out requests, and the documents regulators ask for"
    )
    sub = compliance.add_subparsers(dest="compliance_command", required=True)

    request = sub.add_parser("request", help="record an erasure or opt-out request in the ledger")
    what = request.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="one page, its URL exactly as recorded")
    what.add_argument("--domain", help="every page of a host and its subdomains, e.g. example.org")
    what.add_argument("--sha256", help="a document by the sha256 of its normalized text")
    what.add_argument("--regex", help="every document whose text matches (RE2 syntax), e.g. an email address")
    request.add_argument(
        "--note", help="a reference to the request (ticket number); no personal data: it is published"
    )
    request.set_defaults(func=_request)

    impact = sub.add_parser(
        "impact", help="every dataset version and model holding the documents a request names"
    )
    impact.add_argument("request", help="the request id, or a unique prefix of it")
    impact.add_argument("--json", action="store_true", help="the answer as JSON, for machines")
    impact.set_defaults(func=_impact)

    report = sub.add_parser(
        "report",
        help="write the AI Act training-content summary, Annex XI, GDPR Art. 30 record and model card",
    )
    report.add_argument("--out", required=True, help="folder for the Markdown and HTML files")
    report.add_argument("--model", help="model version (trained_model/<id or prefix>); default: the latest")
    report.add_argument(
        "--config", help="YAML file with the operator's fields (provider, controller, licence, ...)"
    )
    report.set_defaults(func=_report)
