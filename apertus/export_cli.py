"""``apertus audit export``: the records as OpenLineage, PROV-JSON, CycloneDX or Croissant (docs/audit.md).

``add_export_command`` registers the subcommand on the ``audit`` subparsers of apertus/cli.py;
``python -m apertus.export_cli ...`` runs the same command on its own. Like every audit command it
never imports torch or Dagster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("openlineage", "prov", "cyclonedx", "croissant")  # provenance.export.FORMATS, without its imports


def _export(args: argparse.Namespace) -> int:
    from provenance.export import export, serialize
    from records.layout import DataLayout

    try:
        document = export(
            DataLayout.from_env(), args.format, args.version, lock=Path(args.lock) if args.lock else None
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"apertus: error: {error}", file=sys.stderr)
        return 2
    text = serialize(args.format, document)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote the {args.format} export to {args.output}", file=sys.stderr)
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="the export format")
    parser.add_argument(
        "version",
        nargs="?",
        help="a model or dataset version: asset/version_id or asset/<unique id prefix> "
        "(default: the newest model version)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of stdout ('-': stdout)"
    )
    parser.add_argument(
        "--lock",
        metavar="FILE",
        help="cyclonedx: the requirements.lock the model was trained with (default: the checkout's; "
        "its sha256 must match the model's provenance record)",
    )
    parser.set_defaults(func=_export)


def add_export_command(audit_commands) -> None:
    """Register ``export`` on the ``apertus audit`` subparsers (the result of ``add_subparsers``)."""
    export = audit_commands.add_parser(
        "export",
        help="the records as OpenLineage events (JSON Lines), PROV-JSON, a CycloneDX 1.6 BOM or Croissant 1.0",
    )
    _add_arguments(export)


def main(argv: list[str] | None = None) -> int:
    """``apertus audit export`` as a program of its own: ``python -m apertus.export_cli --format F [V]``."""
    parser = argparse.ArgumentParser(prog="apertus audit export", description=__doc__.split("\n")[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
