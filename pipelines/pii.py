"""PII redaction: email addresses, IP addresses and phone numbers become placeholders.

``PIIRedactor`` replaces each span with ``<EMAIL>``, ``<IP>`` or ``<PHONE>`` and sets
``fields.PII_REDACTIONS`` to the number of spans replaced. Phone numbers are recognised by shape
(a ``+`` country code, a parenthesised area code, a national trunk ``0``, or NANP ``555-123-4567``)
and then by their count of digits, so years, dates, version numbers and ordinary numbers stay: none
of them starts with ``+``, ``(`` or a ``0`` followed by 9 to 12 digits in phone-like groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipelines import fields

EMAIL_PLACEHOLDER = "<EMAIL>"
IP_PLACEHOLDER = "<IP>"
PHONE_PLACEHOLDER = "<PHONE>"

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not inside a longer dotted number (a version such as 1.2.3.4.5).
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?![\w])")
_H = r"[0-9A-Fa-f]{1,4}"
IPV6 = re.compile(
    rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,6}}:(?:{_H}(?::{_H}){{0,5}})?|::(?:{_H}:){{0,5}}{_H})(?![\w:])"
)
# Phone candidates; digit counts are checked afterwards (see _phone_end).
PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,8}){1,5}"  # +49 30 1234567, +1 (415) 555-0132
    r"|(?<![\w(])\(0?\d{2,4}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,5}){1,2}"  # (415) 555-0132, (030) 1234567
    r"|(?<![\w.,/+-])0\d(?:[ .]\d{2}){4}(?![\w])"  # 06 12 34 56 78, 06.12.34.56.78
    r"|(?<![\w.,/+-])0\d{1,4}[ /-]?\d{3,8}(?:[ -]\d{2,5})?"  # 030 12345678, 0301 1234567
    r"|(?<![\w.,/+-])\d{3}[-.]\d{3}[-.]\d{4}(?![\w])"  # 415-555-0132
)
_DIGIT_GROUP = re.compile(r"\d+")
# First character -> (min, max) digits; a NANP candidate (first a digit) needs exactly 10. E.164
# allows 15 after "+", but written numbers have at most 13, and that bound is what cuts a year
# written after a number back out of the candidate.
PHONE_DIGITS = {"+": (8, 13), "(": (9, 12), "0": (9, 12)}


@dataclass(frozen=True)
class PIIConfig:
    """Which kinds of PII to redact."""

    emails: bool = True
    ip_addresses: bool = True
    phone_numbers: bool = True


def _phone_end(match: re.Match) -> int | None:
    """End of the longest prefix of a candidate, cut after a digit group, whose digit count fits a
    phone number; None if no prefix does. Cutting lets "+49 30 1234567 2024" keep its year."""
    text, start = match.group(), match.start()
    low, high = PHONE_DIGITS.get(text[0], (10, 10))
    groups = list(_DIGIT_GROUP.finditer(text))
    for k in range(len(groups), 0, -1):
        digits = sum(len(g.group()) for g in groups[:k])
        if low <= digits <= high:
            end = groups[k - 1].end()
            return start + end + (1 if text[end : end + 1] == ")" else 0)
    return None


def redact_phones(text: str) -> tuple[str, int]:
    """``text`` with phone numbers replaced by ``<PHONE>``, and how many were replaced."""
    out, count, position = [], 0, 0
    while (match := PHONE.search(text, position)) is not None:
        end = _phone_end(match)
        if end is None:
            out.append(text[position : match.start() + 1])
            position = match.start() + 1
            continue
        out.append(text[position : match.start()] + PHONE_PLACEHOLDER)
        count += 1
        position = end
    out.append(text[position:])
    return "".join(out), count


def _sub_ipv6(text: str) -> tuple[str, int]:
    """IPv6 addresses of at least three groups (so that "a::b" in code stays) become ``<IP>``."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        if len([g for g in match.group().split(":") if g]) < 3:
            return match.group()
        count += 1
        return IP_PLACEHOLDER

    return IPV6.sub(replace, text), count


def redact(text: str, config: PIIConfig = PIIConfig()) -> tuple[str, int]:
    """``text`` with its PII replaced by placeholders, and the number of spans replaced. Emails go
    first, so the digits of an address are never read as a phone number; IPs before phones likewise."""
    count = 0
    if config.emails:
        text, n = EMAIL.subn(EMAIL_PLACEHOLDER, text)
        count += n
    if config.ip_addresses:
        text, n = IPV4.subn(IP_PLACEHOLDER, text)
        count += n
        text, n = _sub_ipv6(text)
        count += n
    if config.phone_numbers:
        text, n = redact_phones(text)
        count += n
    return text, count


class PIIRedactor(PipelineStep):
    """Replaces emails, IP addresses and phone numbers in each document's text by placeholders and
    sets PII_REDACTIONS to the number replaced (0 when none). Drops nothing."""

    name = "🕵 PII redactor"
    type = "✂️ - FORMAT"

    def __init__(self, config: PIIConfig = PIIConfig()):
        super().__init__()
        self.config = config

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                doc.text, count = redact(doc.text, self.config)
            doc.metadata[fields.PII_REDACTIONS] = count
            self.stat_update("redacted", value=count)
            self.update_doc_stats(doc)
            yield doc
