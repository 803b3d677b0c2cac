"""Main text of an HTML page, with trafilatura under fixed settings (no network, no timeout, no
cross-document state), favouring precision: the article is kept, navigation and boilerplate dropped."""

from __future__ import annotations

from lxml import etree
from trafilatura.core import bare_extraction, determine_returnstring
from trafilatura.settings import Extractor, use_config

from pipelines.normalize import repair_encoding

# No timeout: the SIGALRM it uses would make the result depend on machine load. No minimum size:
# below it trafilatura falls back to taking every text of the page (navigation included) or appends
# a second pass to the first (the page twice); a short article is better kept short.
_CONFIG = use_config()
_CONFIG.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
_CONFIG.set("DEFAULT", "MIN_EXTRACTED_SIZE", "0")

_BLOCKS = {"p", "head", "quote", "code", "list", "table"}


def _inline_text(element: etree._Element) -> str:
    """The text of one block, with <lb/> as a line break."""
    parts = [element.text or ""]
    for child in element:
        parts.append("\n" if child.tag == "lb" else _inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _block_text(element: etree._Element) -> str:
    if element.tag == "list":
        return "\n".join(_inline_text(item).strip() for item in element.iter("item"))
    if element.tag == "table":
        return "\n".join(
            "\t".join(_inline_text(cell).strip() for cell in row.iter("cell")) for row in element.iter("row")
        )
    return _inline_text(element).strip()


def extract_main_text(html: str, url: str | None = None) -> str:
    """The page's main text: blocks (paragraphs, headings, lists, tables) separated by a blank line,
    line breaks inside a block kept; trafilatura collapses whitespace runs inside a line and drops
    invisible characters. A heading that only repeats the start of the block after it (a title
    echoed as the lede) is dropped. Returns "" when nothing is extracted."""
    # Mojibake is repaired first: extraction drops the soft hyphens and C1 controls that a page's
    # UTF-8 read as Windows-1252 is made of, after which the Normalizer could not undo it.
    # trafilatura's own ``extract`` is these two calls plus a content fingerprint (a simhash of the
    # whole text) that it computes for every XML output and that only goes into metadata we do not
    # ask for: two thirds of the extraction time of a page, so it is skipped by calling them directly.
    options = Extractor(
        config=_CONFIG, output_format="xml", precision=True, comments=False, tables=True, images=False,
        links=False, dedup=False, with_metadata=False, url=url,
    )  # fmt: skip
    try:
        document = bare_extraction(repair_encoding(html), options=options, as_dict=False)
    except RuntimeError:  # as ``extract``: trafilatura's own give-up (its timeout is off), no text
        document = None
    if document is None:
        return ""
    xml = determine_returnstring(document, options)
    if not xml:
        return ""
    main = etree.fromstring(xml.encode("utf-8")).find("main")
    if main is None:
        return ""
    blocks = [(child.tag, _block_text(child)) for child in main if child.tag in _BLOCKS]
    blocks = [(tag, text) for tag, text in blocks if text]
    half = len(blocks) // 2
    if half and len(blocks) % 2 == 0 and blocks[:half] == blocks[half:]:
        # trafilatura appends its "wild text" rescue to a short extraction that already holds the
        # same paragraphs (MIN_EXTRACTED_SIZE), which repeats the whole page once.
        blocks = blocks[:half]
    kept = [
        text
        for i, (tag, text) in enumerate(blocks)
        if not (tag == "head" and i + 1 < len(blocks) and blocks[i + 1][1].startswith(text))
    ]
    return "\n\n".join(kept)
