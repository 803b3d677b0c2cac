"""``apertus finetune | certify | alias | rollback`` and the example-membership audit (docs/finetuning.md).

    apertus finetune --base trained_model/<id> --examples FILE.jsonl [--steps N ...]
    apertus certify finetuned_model/<id> [--by NAME]
    apertus alias set production finetuned_model/<id>      apertus alias show [ALIAS]
    apertus rollback production --to finetuned_model/<id>  (the "model" is the alias it serves under)
    apertus audit contains --example FILE_OR_SHA256 --run finetuned_model/<id>  (print_example_contains)

Only ``finetune`` loads torch, and only when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from records.layout import REPO_ROOT, DataLayout

__all__ = [
    "add_commands",
    "finetune_and_seal",
    "print_example_contains",
    "print_model_history",
    "run_tune_demo",
]


def _user() -> str:
    import getpass  # here, not at the top: every command builds this module's parsers (termios, pwd)

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "apertus"


def finetune_and_seal(
    layout: DataLayout,
    base_ref: str,
    examples: str | Path,
    cfg=None,
    *,
    reference_texts: str | Path | None = None,
    log=print,
):
    """model.finetune.finetune_and_seal on the model version ``base_ref`` names (a unique id prefix is
    enough), with FinetuneConfig's defaults unless ``cfg``; returns (manifest of the new version, the run
    record)."""
    from model.finetune import FinetuneConfig
    from model.finetune import finetune_and_seal as seal_run
    from provenance.certify import resolve_model

    _, base_folder = resolve_model(layout, base_ref)
    return seal_run(
        layout, base_folder, examples, cfg or FinetuneConfig(), reference_texts=reference_texts, log=log
    )


def _finetune(args: argparse.Namespace) -> int:
    import dataclasses

    from model.finetune import FinetuneConfig

    overrides = {n: getattr(args, n) for n in CONFIG_OPTIONS if getattr(args, n) is not None}
    cfg = dataclasses.replace(FinetuneConfig(), **overrides)
    manifest, run = finetune_and_seal(
        DataLayout.from_env(), args.base, args.examples, cfg, reference_texts=args.reference_texts
    )
    print(manifest.ref)
    return 0


def _certify(args: argparse.Namespace) -> int:
    from provenance.certify import certify

    try:
        entry = certify(DataLayout.from_env(), args.ref, by=args.by)
    except ValueError as error:
        print(f"apertus certify: refused: {error}", file=sys.stderr)
        return 1
    print(
        f"certified {entry.payload['model_version']} (ledger entry {entry.index}, by {entry.payload['by']}; "
        f"model sha256 {entry.payload['model_sha256']})"
    )
    return 0


def _alias(args: argparse.Namespace) -> int:
    from provenance.certify import aliases, set_alias

    layout = DataLayout.from_env()
    if args.alias_command == "set":
        try:
            entry = set_alias(layout, args.alias, args.ref, by=args.by)
        except ValueError as error:
            print(f"apertus alias set: refused: {error}", file=sys.stderr)
            return 1
        p = entry.payload
        print(f"{p['alias']} -> {p['model_version']} (was {p['previous']}; ledger entry {entry.index})")
        return 0
    current = aliases(layout)
    if args.alias:
        if args.alias not in current:
            print(f"apertus alias show: {args.alias!r} was never set", file=sys.stderr)
            return 1
        current = {args.alias: current[args.alias]}
    for name, ref in sorted(current.items()):
        print(f"{name}  {ref}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from provenance.certify import rollback

    try:
        back, moved = rollback(DataLayout.from_env(), args.alias, args.to, by=args.by)
    except ValueError as error:
        print(f"apertus rollback: refused: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.alias}: {back.payload['from']} -> {back.payload['to']} "
        f"(ledger entries {back.index} rollback, {moved.index} alias_moved)"
    )
    return 0


# FinetuneConfig fields settable from the command line; None keeps the dataclass's default, which
# stays defined in one place (model/finetune.py, not imported here: it loads torch).
CONFIG_OPTIONS = {
    "steps": int,
    "batch_size": int,
    "max_tokens": int,
    "peak_lr": float,
    "final_lr": float,
    "warmup_steps": int,
    "seed": int,
    "held_out_fraction": float,
    "held_out_loss_margin": float,
    "perplexity_margin": float,
    "eval_sequences": int,
}


def add_commands(commands) -> None:
    """Register finetune, certify, alias and rollback on apertus's subparsers (imports nothing heavy)."""
    by = {"default": _user(), "help": "who certifies or moves the alias (default: the login name)"}
    model_help = "a model version: trained_model/<id> or finetuned_model/<id> (a unique id prefix is enough)"

    tune = commands.add_parser("finetune", help="fine-tune a model version on examples; seal the run")
    tune.add_argument("--base", required=True, help=model_help)
    tune.add_argument("--examples", required=True, help='JSONL: {"prompt", "response"} or {"text"} per line')
    tune.add_argument(
        "--reference-texts",
        help="JSONL of {text, language}: held-out data for the perplexity "
        "gate when the base's token_shards version is not in the data folder",
    )
    for name, kind in CONFIG_OPTIONS.items():
        tune.add_argument(f"--{name.replace('_', '-')}", type=kind, help="FinetuneConfig (model/finetune.py)")
    tune.set_defaults(func=_finetune)

    cert = commands.add_parser(
        "certify", help="re-verify a model version and its gates; sign a certification"
    )
    cert.add_argument("ref", help=model_help)
    cert.add_argument("--by", **by)
    cert.set_defaults(func=_certify)

    alias = commands.add_parser("alias", help="name certified model versions (production, certified, ...)")
    alias_commands = alias.add_subparsers(dest="alias_command", required=True)
    set_ = alias_commands.add_parser("set", help="point an alias at a certified model version")
    set_.add_argument("alias")
    set_.add_argument("ref", help=model_help)
    set_.add_argument("--by", **by)
    show = alias_commands.add_parser("show", help="the model version each alias names")
    show.add_argument("alias", nargs="?")
    alias.set_defaults(func=_alias)

    back = commands.add_parser("rollback", help="move an alias back to an earlier certified version")
    back.add_argument("alias", metavar="MODEL", help="the alias the model is served under (e.g. production)")
    back.add_argument("--to", required=True, help="the certified version to restore; " + model_help)
    back.add_argument("--by", **by)
    back.set_defaults(func=_rollback)


def print_example_contains(example: str, run: str, *, as_json: bool) -> int:
    """Was this example (a file holding one example, or its sha256) used in training run ``run``?
    Prints the inclusion proof; 0 when in, 1 when not (held out, or never in the file), 2 on error."""
    from records.finetune import contains_example, example_hash_of, verify_example_proof

    layout = DataLayout.from_env()
    try:
        found, proof = contains_example(layout, example, run)
        sha = example_hash_of(example)
    except (ValueError, OSError) as error:
        print(f"apertus audit contains: error: {error}", file=sys.stderr)
        return 2
    if found:
        assert verify_example_proof(proof, sha)
        answer = {"in": True, **proof}
    else:
        answer = {"in": False, "example_sha256": sha, "run": run, "reason": _absence_reason(layout, sha, run)}
    if as_json:
        print(json.dumps(answer, ensure_ascii=False))
    elif found:
        print(
            f"IN: example {sha[:16]}… trained on in {proof['run']} (step/slot {proof['leaf']}; "
            f"{proof['uses']} use(s))"
        )
        print(f"  leaf {proof['leaf_index']} of {proof['tree_size']}, root {proof['root']}")
        print("  audit path: " + " ".join(p[:16] for p in proof["audit_path"]))
    else:
        print(f"NOT IN: example {sha[:16]}… {answer['reason']}")
    return 0 if found else 1


def _absence_reason(layout: DataLayout, sha: str, run: str) -> str:
    from records.finetune import EXAMPLES_FILE
    from records.manifest import version_folder

    for line in (version_folder(layout.datasets, run) / EXAMPLES_FILE).read_text().splitlines():
        row = json.loads(line)
        if row["sha256"] == sha:
            return (
                f"is in the run's examples file (line {row['line'] + 1}) but was held out, never trained on"
            )
    return "is not in the run's examples file"


def print_model_history(ref: str) -> int:
    """Print base model -> fine-tuning runs -> certifications, alias moves and rollbacks; 0, or 2 on error."""
    from provenance.certify import model_history

    try:
        history = model_history(DataLayout.from_env(), ref)
    except (ValueError, OSError) as error:
        print(f"apertus audit history: error: {error}", file=sys.stderr)
        return 2
    for item in history:
        indent = "  " * item["depth"]
        print(
            f"{item['index']:>5}  {item['timestamp'][:19]}  {indent}{item['model_version']}  {item['detail']}"
        )
    return 0


def run_tune_demo(layout: DataLayout, base_ref: str, log=print) -> int:
    """The demo's fine-tuning act: certify the base and make it ``production``, fine-tune on the bundled
    examples, prove one example's use (and a held-out one's absence), certify the fine-tune and promote
    it, then roll ``production`` back to the base and check the restored weights are the certified
    bytes. Returns 0 when every step behaved, 1 otherwise."""
    from provenance.certify import certify, materialize_alias, rollback, set_alias
    from records.finetune import contains_example, read_examples, verify_example_proof
    from records.hashing import sha256_file
    from sample import FINETUNE_EXAMPLES  # here: every `apertus` command builds this module's parser

    by = "apertus demo"
    log(f"\n== fine-tuning (SovereignTune) on {FINETUNE_EXAMPLES.relative_to(REPO_ROOT)}")
    base = certify(layout, base_ref, by=by)
    base_ref = base.payload["model_version"]
    log(f"$ apertus certify {base_ref[:26]}  -> model_certified, ledger entry {base.index}")
    moved = set_alias(layout, "production", base_ref, by=by)
    log(f"$ apertus alias set production {base_ref[:26]}  -> entry {moved.index}")
    manifest, run = finetune_and_seal(layout, base_ref, FINETUNE_EXAMPLES, log=lambda line: None)
    for name, gate in run["gates"].items():
        log(f"   gate {name}: {'passed' if gate['passed'] else 'FAILED'}")
    log(
        f"$ apertus finetune --base {base_ref[:26]} --examples {FINETUNE_EXAMPLES.name}"
        f"  -> {manifest.ref[:28]}  "
        f"loss {run['metrics']['first_loss']:.2f} -> {run['metrics']['final_loss']:.2f}, "
        f"examples root {run['examples']['root'][:16]}…"
    )
    examples = read_examples(FINETUNE_EXAMPLES)
    proofs = [(e, contains_example(layout, e.sha256, manifest.ref)) for e in examples]
    used = next((e, p) for e, (found, p) in proofs if found)
    unused = [e for e, (found, _) in proofs if not found]
    ok = verify_example_proof(used[1], used[0].sha256, run["examples"]["root"])
    log(
        f"$ apertus audit contains --example {used[0].sha256[:16]}… --run {manifest.ref[:28]}  -> IN, "
        f"leaf {used[1]['leaf_index']} of {used[1]['tree_size']}, proof verifies: {ok}"
    )
    log(f"   {len(unused)} held-out example(s) have no proof (NOT IN)")
    try:
        tuned = certify(layout, manifest.ref, by=by)
    except ValueError as error:
        log(f"$ apertus certify {manifest.ref[:28]}  -> refused:\n   {error}")
        return 0 if ok else 1
    log(f"$ apertus certify {manifest.ref[:28]}  -> model_certified, ledger entry {tuned.index}")
    moved = set_alias(layout, "production", manifest.ref, by=by)
    log(f"$ apertus alias set production {manifest.ref[:28]}  -> entry {moved.index}")
    back, moved = rollback(layout, "production", base_ref, by=by)
    restored = materialize_alias(layout, "production", layout.work / "production.safetensors")
    identical = sha256_file(restored) == base.payload["model_sha256"]
    log(
        f"$ apertus rollback production --to {base_ref[:26]}  -> entries {back.index}, {moved.index}; "
        f"restored weights bit-identical to the certified ones: {identical}"
    )
    return 0 if ok and identical else 1
