"""``apertus audit``: answers from the catalog alone. Imports neither Dagster nor torch."""

from __future__ import annotations

import csv
import json
import sys

from provenance.catalog import query
from provenance.layout import DataLayout


def _format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(lines)


def print_query(sql: str, output: str = "table") -> int:
    """Print the result of a read-only query on the catalog; 0 on success, 2 on a refused query."""
    layout = DataLayout.from_env()
    import duckdb

    try:
        columns, rows = query(layout, sql)
    except (ValueError, duckdb.Error) as error:
        print(f"apertus audit sql: {error}", file=sys.stderr)
        return 2
    if output == "json":
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, ensure_ascii=False))
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(_format_table(columns, rows))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return 0
