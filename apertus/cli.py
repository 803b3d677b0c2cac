"""``apertus``: the command line. Each subcommand imports only what it needs, so ``apertus audit``
starts fast and never loads Dagster or torch."""

from __future__ import annotations

import argparse
import sys


def _ingest(args: argparse.Namespace) -> int:
    from apertus.snapshots import ingest

    ingest(args.path, args.snapshot, link=args.link)
    return 0


def _curate(args: argparse.Namespace) -> int:
    from apertus.snapshots import curate

    curate(args.snapshot, config_file=args.config, tasks=args.tasks)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from apertus.demo import run_demo

    return run_demo(tasks=args.tasks)


def _audit_sql(args: argparse.Namespace) -> int:
    from apertus.audit import print_query

    return print_query(args.query, output=args.format)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apertus", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="register a folder of shards as a new source snapshot")
    ingest.add_argument("path", help="folder of JSONL(.gz), Parquet and WARC files")
    ingest.add_argument("--snapshot", required=True, help="snapshot name (a Dagster partition key)")
    ingest.add_argument("--link", action="store_true", help="symlink the folder into the inbox instead of copying")
    ingest.set_defaults(func=_ingest)

    curate = commands.add_parser("curate", help="materialize the curation assets for one snapshot")
    curate.add_argument("--snapshot", required=True)
    curate.add_argument("--config", help="YAML file overriding the curation config")
    curate.add_argument("--tasks", type=int, default=4, help="tasks per step (fixes the output sharding)")
    curate.set_defaults(func=_curate)

    demo = commands.add_parser("demo", help="curate the bundled sample corpus and print a summary")
    demo.add_argument("--tasks", type=int, default=4)
    demo.set_defaults(func=_demo)

    audit = commands.add_parser("audit", help="answer questions from the records")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    sql = audit_commands.add_parser("sql", help="run a read-only SQL query on the catalog")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=_audit_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"apertus: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
