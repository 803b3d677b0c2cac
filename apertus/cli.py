"""Apertus Pipeline from the command line: curate, stage, train, fine-tune, certify and audit.

Each subcommand imports only what it needs, so ``apertus audit`` starts fast and never loads
Dagster or torch."""

from __future__ import annotations

import argparse
import sys

# The default stays ExecutorConfig's (pipelines/executor.py), not imported here: it loads datatrove.
TASKS_HELP = "tasks per step, which fixes the output sharding (default: ExecutorConfig.tasks)"


def _ingest(args: argparse.Namespace) -> int:
    from apertus.snapshots import ingest

    ingest(args.path, args.snapshot, link=args.link)
    return 0


def _run_stoppable(launch) -> int:
    """Run ``launch`` (a Dagster launch in this process) so that SIGTERM and SIGINT stop it: the run
    is marked failed, its slots freed, and the exit code is 143 or 130 (apertus/stopping.py)."""
    from apertus.snapshots import dagster_instance
    from apertus.stopping import stoppable
    from assets.run_claims import current_run_id, release_own_runs, take_signal_from_dagster, waiting_report

    instance = dagster_instance()

    def report_waiting() -> None:
        run_id = current_run_id(instance)
        if run_id is not None:
            waiting_report(instance, run_id, lambda line: print(line, file=sys.stderr, flush=True))

    def abandon(reason: str) -> None:
        for run_id in release_own_runs(instance, reason):
            print(f"apertus: run {run_id} marked failed, its slots freed", file=sys.stderr)

    with stoppable(take_signal_from_dagster, on_tick=report_waiting, on_abandon=abandon) as stop:
        try:
            launch()
        except BaseException:
            # A stop may surface as Dagster's interrupt, our Stopped, or a step's error it caused.
            if stop.signo is None:
                raise
    if stop.signo is None:
        return 0
    abandon(f"stopped by {stop.name}")
    print(f"apertus: stopped by {stop.name}", file=sys.stderr)
    return stop.exit_code


def _curate(args: argparse.Namespace) -> int:
    from apertus.snapshots import curate

    return _run_stoppable(lambda: curate(args.snapshot, config_file=args.config, tasks=args.tasks))


def _stage(args: argparse.Namespace) -> int:
    from apertus.snapshots import stage

    return _run_stoppable(lambda: stage(curriculum=args.curriculum, tasks=args.tasks))


def _train(args: argparse.Namespace) -> int:
    from apertus.snapshots import train

    return _run_stoppable(lambda: train(max_steps=args.max_steps))


def _claims(args: argparse.Namespace) -> int:
    from apertus.snapshots import dagster_instance
    from assets.run_claims import pool_holders, release_run

    instance = dagster_instance()
    if args.release:
        release_run(instance, args.release, "released by `apertus claims --release`")
        print(f"run {args.release}: slots and pending claims freed")
        return 0
    holders = pool_holders(instance)
    for holder in holders:
        alive = {True: "alive", False: "gone", None: "unknown"}[holder.alive]
        print(f"{holder.describe()}: process {alive}")
    if not holders:
        print("no run holds or waits for a slot in the pools")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from apertus.demo import run_demo

    return run_demo(tasks=args.tasks, documents=args.documents, max_steps=args.max_steps)


def _audit_sql(args: argparse.Namespace) -> int:
    from apertus.audit import print_query

    return print_query(args.query, output=args.format)


def _audit_contains(args: argparse.Namespace) -> int:
    if args.example:
        if not args.run:
            print("apertus audit contains: --example needs --run finetuned_model/<id>", file=sys.stderr)
            return 2
        from apertus.tune_cli import print_example_contains

        return print_example_contains(args.example, args.run, as_json=args.json)
    from apertus.audit import print_contains

    if args.model or args.all_models:
        from apertus.audit import print_model_contains

        return print_model_contains(
            url=args.url, sha256=args.sha256, text=args.text, models=args.model, as_json=args.json
        )
    return print_contains(
        url=args.url, sha256=args.sha256, text=args.text, versions=args.version, as_json=args.json
    )


def _audit_lineage(args: argparse.Namespace) -> int:
    from apertus.audit import print_lineage

    return print_lineage(args.version, prov=args.prov, as_json=args.json)


def _audit_diff(args: argparse.Namespace) -> int:
    from apertus.audit import print_diff

    return print_diff(args.a, args.b, limit=args.limit, as_json=args.json)


def _audit_verify(args: argparse.Namespace) -> int:
    from apertus.audit import print_verify

    return print_verify(args.version, as_json=args.json, trusted_key=args.trusted_key, head=args.head)


def _audit_head(args: argparse.Namespace) -> int:
    from apertus.audit import print_head

    return print_head()


def _init(args: argparse.Namespace) -> int:
    """Make (or adopt into) the key folder and say where it is and what it holds."""
    from records.identity import init_instance
    from records.keys import KEYS_ENV, PUBLIC_KEY
    from records.layout import DataLayout

    identity = init_instance(DataLayout.from_env(), adopt=args.adopt)
    if identity.adopted_from:
        done = f"moved {identity.adopted_from} into it (ledger entry {identity.adoption_entry}, key_adopted)"
    else:
        done = "created a new signing key" if identity.created else "already initialized, nothing changed"
    print(f"key folder: {identity.folder} ({done})")
    print(f"key id: {identity.key_id}")
    print(f"trusted key for `apertus audit verify --trusted-key`: {identity.folder / PUBLIC_KEY}")
    print(
        f"keep this folder off the data volume; every command that signs needs {KEYS_ENV}={identity.folder}"
    )
    return 0


def _audit_history(args: argparse.Namespace) -> int:
    from apertus.tune_cli import print_model_history

    return print_model_history(args.version)


def _audit_index(args: argparse.Namespace) -> int:
    from apertus.audit import build_audit_index, build_lookups

    if args.audit:
        return build_audit_index()
    return build_lookups(rebuild=args.rebuild)


def _add_audit_commands(audit_commands) -> None:
    version_help = "a dataset version: asset/version_id, or asset/<unique id prefix>"
    contains = audit_commands.add_parser(
        "contains",
        help="was a document in? exit 0: in, 1: not in (never seen, dropped, not trained on), 2: error, "
        "3 (--model/--all-models): in the staged data of a model that recorded no per-sequence use",
        description="Exit status: 0 in (kept in a target version; with --model: trained on by a model); "
        "1 not in (never seen, dropped, not staged, staged but never trained on); 2 error; "
        "3 only with --model/--all-models: no model trained on it, but a model holds it in its staged "
        "data and recorded no sequence_use.parquet (in the staged data; per-sequence use unknown).",
    )
    what = contains.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="the document's URL, exactly as recorded")
    what.add_argument("--sha256", help="sha256 of the document's normalized text (its content identity)")
    what.add_argument("--text", help="a text snippet (NFC-normalized), searched in every document's text")
    what.add_argument(
        "--example", help="a fine-tuning example: a file holding one JSON example, or its sha256 (with --run)"
    )
    scope = contains.add_mutually_exclusive_group()
    scope.add_argument("--version", action="append", help=f"target version (repeatable); {version_help}")
    scope.add_argument(
        "--all-versions", action="store_true", help="every chain end in the catalog (the default)"
    )
    scope.add_argument(
        "--model",
        action="append",
        help="was it trained on by this model (trained_model/<id prefix>; repeatable)",
    )
    scope.add_argument(
        "--all-models", action="store_true", help="was it trained on by any model in the catalog"
    )
    contains.add_argument(
        "--run",
        help="with --example: the finetuned_model/<id> whose training is asked about (inclusion proof)",
    )
    contains.add_argument("--json", action="store_true", help="the answer as JSON, for machines")
    contains.set_defaults(func=_audit_contains)

    lineage = audit_commands.add_parser(
        "lineage", help="the chain of versions behind a version, down to raw files"
    )
    lineage.add_argument("version", help=version_help)
    lineage.add_argument(
        "--prov", metavar="FILE", help="write the lineage as W3C PROV-JSON to FILE ('-': stdout)"
    )
    lineage.add_argument("--json", action="store_true", help="print PROV-JSON instead of the tree")
    lineage.set_defaults(func=_audit_lineage)

    diff = audit_commands.add_parser(
        "diff", help="documents added and removed between two versions, by reason"
    )
    diff.add_argument("a", help=version_help)
    diff.add_argument("b", help=version_help)
    diff.add_argument("--limit", type=int, default=5, help="example documents listed per reason (default 5)")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(func=_audit_diff)

    verify = audit_commands.add_parser(
        "verify", help="re-hash data and check the ledger; exit 1 naming what differs"
    )
    verify.add_argument(
        "version", nargs="?", help=f"check this version and its ancestors only; {version_help}"
    )
    verify.add_argument("--json", action="store_true")
    verify.add_argument(
        "--trusted-key",
        metavar="FILE",
        help="check every signature with this public key (PEM, or the key folder) instead of the data folder's",
    )
    verify.add_argument(
        "--head",
        metavar="FILE",
        help="a held head (checkpoint from `apertus audit head`) the log must extend",
    )
    verify.set_defaults(func=_audit_verify)

    head = audit_commands.add_parser(
        "head", help="print the latest signed head as a checkpoint note; keep it in the key folder"
    )
    head.set_defaults(func=_audit_head)

    history = audit_commands.add_parser(
        "history", help="a model's family from the ledger: base, fine-tuning runs, certifications, aliases"
    )
    history.add_argument(
        "version", help="trained_model/<id> or finetuned_model/<id> (a unique prefix will do)"
    )
    history.set_defaults(func=_audit_history)

    index = audit_commands.add_parser("index", help="write the lookup files that make `contains` fast")
    index.add_argument(
        "--rebuild", action="store_true", help="rewrite them for every version, not only missing ones"
    )
    index.add_argument(
        "--audit",
        action="store_true",
        help="rewrite the audit index (one index of every version, read by contains and lineage) from "
        "the manifests and pinned lookups, and pin its root in a new ledger entry",
    )
    index.set_defaults(func=_audit_index)

    repin = audit_commands.add_parser(
        "repin",
        help="pin every sealed version that has no ledger entry (or no pinned lookup root), in one batch",
    )
    repin.add_argument("--json", action="store_true")

    def _audit_repin(args: argparse.Namespace) -> int:
        from apertus.audit import print_repin

        return print_repin(as_json=args.json)

    repin.set_defaults(func=_audit_repin)

    from apertus.export_cli import add_export_command

    add_export_command(audit_commands)


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, sized as argparse sizes it, without ``shutil``: argparse imports
    shutil (and bz2, lzma) for every argument it adds, only to ask the terminal's width, and every
    cold ``apertus audit`` process would pay for that import (~4 ms)."""

    def __init__(self, prog: str, **kwargs):
        if kwargs.get("width") is None:
            kwargs["width"] = _columns() - 2  # as argparse does
        super().__init__(prog, **kwargs)


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it ($COLUMNS, stdout's, else 80)."""
    import os

    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help uses ``_Formatter``; its subcommands' parsers are of this class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _add_operation_commands(commands) -> None:
    """init, ingest, curate, stage, train, claims, demo, and tune_cli's commands."""
    init = commands.add_parser(
        "init", help="create this instance's key folder (APERTUS_KEYS, outside the data folder)"
    )
    init.add_argument(
        "--adopt",
        action="store_true",
        help="move the key older code kept in <data>/ledger/keys/ into the key folder (a ledger entry says so)",
    )
    init.set_defaults(func=_init)

    ingest = commands.add_parser("ingest", help="register a folder of shards as a new source snapshot")
    ingest.add_argument("path", help="folder of JSONL(.gz), Parquet and WARC files")
    ingest.add_argument("--snapshot", required=True, help="snapshot name (a Dagster partition key)")
    ingest.add_argument(
        "--link", action="store_true", help="symlink the folder into the inbox instead of copying"
    )
    ingest.set_defaults(func=_ingest)

    curate = commands.add_parser("curate", help="materialize the curation assets for one snapshot")
    curate.add_argument("--snapshot", required=True)
    curate.add_argument("--config", help="YAML file overriding the curation config")
    curate.add_argument("--tasks", type=int, help=TASKS_HELP)
    curate.set_defaults(func=_curate)

    stage = commands.add_parser(
        "stage", help="stage every curated snapshot into the curriculum's training stages"
    )
    stage.add_argument("--curriculum", help="curriculum YAML (default: configs/curriculum/sample.yaml)")
    stage.add_argument("--tasks", type=int, help=TASKS_HELP)
    stage.set_defaults(func=_stage)

    train = commands.add_parser(
        "train", help="train the model over the latest token shards (the trained_model asset)"
    )
    train.add_argument(
        "--max-steps", type=int, help="optimizer steps across all stages (default: the recipe's max_steps)"
    )
    train.set_defaults(func=_train)

    claims = commands.add_parser(
        "claims", help="runs holding or waiting for concurrency slots; free those of a dead run"
    )
    claims.add_argument(
        "--release", metavar="RUN_ID", help="mark the run failed (if unfinished) and free its slots"
    )
    claims.set_defaults(func=_claims)

    demo = commands.add_parser(
        "demo",
        help="the whole product on the bundled sample: curate, stage, train, fine-tune, certify, roll back, audit",
    )
    demo.add_argument("--tasks", type=int, help=TASKS_HELP)
    demo.add_argument("--documents", type=int, help="crawl records in the generated sample (default: all)")
    demo.add_argument("--max-steps", type=int, help="training steps (default: the recipe's max_steps)")
    demo.set_defaults(func=_demo)

    from apertus.tune_cli import add_commands as add_tune_commands

    add_tune_commands(commands)  # finetune, certify, alias set|show, rollback


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``apertus`` parser; ``only="audit"``: with the ``audit`` commands alone, which parse
    ``apertus audit ...`` the same (a cold ``apertus audit`` process builds only those: the full
    parser's ~110 arguments cost it ~15 ms, each help text looked up through gettext)."""
    parser = _Parser(prog="apertus", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    if only != "audit":
        _add_operation_commands(commands)

    audit = commands.add_parser("audit", help="answer questions from the records")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    sql = audit_commands.add_parser("sql", help="run a read-only SQL query on the catalog")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=_audit_sql)
    _add_audit_commands(audit_commands)

    if only != "audit":
        from apertus.compliance_cli import add_commands as add_compliance_commands

        add_compliance_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser("audit" if argv[:1] == ["audit"] else None).parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"apertus: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
