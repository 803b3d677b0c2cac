"""PII redaction: the formats people write, the numbers that are not PII, and recall on the sample
crawl's injected PII."""

import pytest
from datatrove.data import Document

from pipelines import fields
from pipelines.pii import PIIConfig, PIIRedactor, redact
from tests.pipelines.sample_records import snapshot_records

PII = [
    ("anna.novak12@gmail.com", "<EMAIL>"),
    ("j_smith+news@mail.example.co.uk", "<EMAIL>"),
    ("81.22.133.4", "<IP>"),
    ("2001:db8:85a3::8a2e:370:7334", "<IP>"),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", "<IP>"),
    ("+49 30 1234567", "<PHONE>"),
    ("+1 (415) 555-0132", "<PHONE>"),
    ("+1 415-555-0132", "<PHONE>"),
    ("+33 6 12 34 56 78", "<PHONE>"),
    ("+44 20 7946 0958", "<PHONE>"),
    ("+420 123 4567890", "<PHONE>"),
    ("030 12345678", "<PHONE>"),
    ("0899 1234567", "<PHONE>"),
    ("030/1234567", "<PHONE>"),
    ("(415) 555-0132", "<PHONE>"),
    ("415-555-0132", "<PHONE>"),
    ("06 12 34 56 78", "<PHONE>"),
    ("06.12.34.56.78", "<PHONE>"),
]

NOT_PII = [
    "In 2024 the team grew to 1 500 people and 123456 users.",
    "Released on 2024-05-01, again on 12.05.2024 and on 05/12/2024; due 01/2024.",
    "Upgrade from version 1.2.3 to 4.11.13 or 0.10.1, kernel 6.1.0-18-amd64.",
    "Prices rose 3.5 % to 1,234.56 euros; call it 10:30 or 12:45:00.",
    "In C++ write std::vector or a::b; the ratio is 16:9.",
    "ISBN 978-3-16-148410-0 and page 0123 of 0456.",
]


@pytest.mark.parametrize("value,placeholder", PII)
def test_redacts_each_format(value, placeholder):
    text = f"Kontakt: {value}. Danke!"
    assert redact(text) == (f"Kontakt: {placeholder}. Danke!", 1)


@pytest.mark.parametrize("text", NOT_PII)
def test_leaves_years_dates_versions_and_numbers(text):
    assert redact(text) == (text, 0)


def test_adjacent_numbers_are_separate_and_a_year_after_a_number_stays():
    assert redact("+49 30 1234567 2024") == ("<PHONE> 2024", 1)
    assert redact("0301 1234567 0455 7654321") == ("<PHONE> <PHONE>", 2)
    assert redact("Mail li.wang3@qq.com or call +86 10 1234567, server 11.2.3.4.") == (
        "Mail <EMAIL> or call <PHONE>, server <IP>.",
        3,
    )


def test_config_turns_kinds_off():
    text = "li.wang3@qq.com 81.22.133.4 +49 30 1234567"
    assert redact(text, PIIConfig(emails=False)) == ("li.wang3@qq.com <IP> <PHONE>", 2)
    assert redact(text, PIIConfig(phone_numbers=False, ip_addresses=False)) == (
        "<EMAIL> 81.22.133.4 +49 30 1234567",
        1,
    )


def test_redactor_sets_count_on_every_document():
    docs = [
        Document("Write to eva.kim7@naver.com or call (415) 555-0132.", "a"),
        Document("Nothing here in 2024.", "b"),
    ]
    out = list(PIIRedactor().run(iter(docs), rank=0, world_size=1))
    assert out[0].text == "Write to <EMAIL> or call <PHONE>."
    assert [d.metadata[fields.PII_REDACTIONS] for d in out] == [2, 0]


def test_recall_on_sample_crawl(tmp_path):
    sample_crawl = pytest.importorskip("sample.crawl")
    truth = sample_crawl.generate_snapshot(tmp_path / "snap", seed=0, num_documents=1500)
    records = [r for r in snapshot_records(tmp_path / "snap", truth) if r["kind"] in ("pii", "clean")]
    docs = [Document(r["text"], str(i)) for i, r in enumerate(records)]
    docs = list(PIIRedactor().run(iter(docs), rank=0, world_size=1))
    injected = [(item, doc) for r, doc in zip(records, docs, strict=True) for item in r["pii"]]
    missed = [item for item, doc in injected if item in doc.text]
    pii_docs = [(r, d) for r, d in zip(records, docs, strict=True) if r["kind"] == "pii"]
    clean_redactions = sum(
        d.metadata[fields.PII_REDACTIONS] for r, d in zip(records, docs, strict=True) if r["kind"] == "clean"
    )
    print(
        f"PII recall: {len(injected) - len(missed)}/{len(injected)}; redactions in clean documents: {clean_redactions}"
    )
    assert len(injected) >= 50 and not missed
    assert all(d.metadata[fields.PII_REDACTIONS] == len(r["pii"]) for r, d in pii_docs)
    # Clean pages hold no PII by construction (but may quote documentation addresses such as 2001:db8::1).
    assert clean_redactions <= 0.01 * len(records)
