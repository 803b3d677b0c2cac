"""``Normalizer``: one canonical form of every document's text, and its content hash.

Text is repaired by ftfy (mojibake such as UTF-8 read as Windows-1252 or Latin-1, C1 controls,
terminal escapes, surrogates), put in Unicode NFC, its line endings made ``\\n`` and trailing
whitespace stripped from every line and from the end. The sha256 of the result is the document's
content identity from here on (``fields.SHA256``): equal texts, equal hashes, whatever the source
encoding. Normalizing twice changes nothing.

ftfy runs with fixed settings that only undo damage: fixes that would rewrite correct text
(curly quotes, full-width CJK punctuation, ligatures, HTML entities) are off.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import ftfy
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipelines import fields

FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,  # "&amp;" in plain text may be the text itself (code, documentation)
    remove_terminal_escapes=True,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,  # would turn CJK full-width punctuation into ASCII
    uncurl_quotes=False,
    fix_line_breaks=True,
    fix_surrogates=True,
    remove_control_chars=True,
    normalization="NFC",
    explain=False,
)
_TRAILING_SPACE = re.compile(r"[^\S\n]+(?=\n)")


def repair_encoding(text: str) -> str:
    """Only ftfy's mojibake repair, for text that a lossy step (HTML extraction) comes after."""
    return ftfy.fix_encoding(text)


def normalize_text(text: str) -> str:
    """The canonical form of ``text``: ftfy-repaired, NFC, ``\\n`` line endings, no trailing
    whitespace on any line nor at the end. ``normalize_text(normalize_text(t)) == normalize_text(t)``."""
    return _canonical(ftfy.fix_text(text, FTFY_CONFIG))


def _canonical(repaired: str) -> str:
    text = unicodedata.normalize("NFC", repaired).replace("\r\n", "\n").replace("\r", "\n")
    return _TRAILING_SPACE.sub("", text).rstrip()


def text_sha256(text: str) -> str:
    """Hex sha256 of ``text`` as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Normalizer(PipelineStep):
    """Replaces each document's text by ``normalize_text(text)`` and sets ``metadata[SHA256]``.

    Stats: ``repaired`` (ftfy changed the text: mojibake, controls, line breaks, NFC) and
    ``whitespace_stripped`` (trailing whitespace removed), per document.
    """

    name = "🧼 Normalize text"
    type = "🔨 - FORMAT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for document in data:
            with self.track_time():
                original = document.text
                repaired = ftfy.fix_text(original, FTFY_CONFIG)
                document.text = _canonical(repaired)
                document.metadata[fields.SHA256] = text_sha256(document.text)
            if repaired != original:
                self.stat_update("repaired")
            if document.text != repaired:
                self.stat_update("whitespace_stripped")
            self.stat_update("documents")
            yield document
