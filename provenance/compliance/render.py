"""A generated document as a list of blocks, written as Markdown and as one self-contained HTML file.

The documents are built from records only, so a block holds text and numbers, never layout. HTML
has its style inline, system fonts and no script or external resource: it opens offline and prints.
Inline markup is one kind: `code` spans (hashes, refs); everything else is escaped.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

TO_FILL = "[to be filled by the operator]"


@dataclass(frozen=True)
class Heading:
    level: int  # 1 = the title
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: list[tuple]
    caption: str | None = None


@dataclass(frozen=True)
class Fields:
    """Label/value pairs (a form: the template's fields)."""

    items: list[tuple[str, str]]


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Document:
        self.blocks.extend(blocks)
        return self


def fmt(value) -> str:
    """Numbers with thousands separators; None as "not recorded"; everything else as text."""
    if value is None:
        return "not recorded"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _md_cell(value) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Fields):
            out += [f"- **{label}:** {fmt(value)}" for label, value in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [f"*{block.caption}*", ""]
            out.append("| " + " | ".join(block.header) + " |")
            out.append("|" + "|".join(" --- " for _ in block.header) + "|")
            out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in block.rows]
            if not block.rows:
                out.append(
                    "| " + " | ".join("none" if i == 0 else "" for i in range(len(block.header))) + " |"
                )
            out.append("")
        else:
            raise AssertionError(f"unknown block {block!r}")
    return "\n".join(out).rstrip() + "\n"


def _inline(text) -> str:
    escaped = html.escape(fmt(text))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;line-height:1.5;color:#1b1b1b}h1{font-size:1.6rem}h2{font-size:1.3rem;margin-top:2rem;
border-bottom:1px solid #ccc}h3{font-size:1.1rem}table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #bbb;padding:.2rem .5rem;text-align:left;vertical-align:top}td.n{text-align:right}
th{background:#f0f0f0}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
caption{text-align:left;font-style:italic}@media print{body{margin:0}}"""


def to_html(doc: Document) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(block.level, 6)
            out.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Fields):
            out.append(
                "<dl>"
                + "".join(f"<dt>{_inline(k)}</dt><dd>{_inline(v)}</dd>" for k, v in block.items)
                + "</dl>"
            )
        elif isinstance(block, Table):
            caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = (
                "".join(
                    "<tr>"
                    + "".join(
                        f'<td class="n">{_inline(v)}</td>'
                        if isinstance(v, int | float)
                        else f"<td>{_inline(v)}</td>"
                        for v in row
                    )
                    + "</tr>"
                    for row in block.rows
                )
                or f'<tr><td colspan="{len(block.header)}">none</td></tr>'
            )
            out.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            raise AssertionError(f"unknown block {block!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write(doc: Document, out_dir: Path, name: str) -> list[Path]:
    """Write ``<name>.md`` and ``<name>.html`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / f"{name}.md", out_dir / f"{name}.html"
    md.write_text(to_markdown(doc), encoding="utf-8")
    page.write_text(to_html(doc), encoding="utf-8")
    return [md, page]
