"""Language identification: hand-made documents in many scripts, selection with reasons and details,
the model's hash check, and accuracy against the sample crawl's ground truth."""

import collections
import dataclasses

import pytest
from datatrove.data import Document

from pipelines import fields, reasons
from pipelines.langid import (
    LanguageIdConfig,
    LanguageIdentifier,
    LanguageSelector,
    dominant_script,
    load_lid_model,
    text_for_prediction,
)
from tests.pipelines.sample_records import snapshot_records

SAMPLES = {  # language -> (text, script)
    "en": ("The committee will publish its final report on the new railway line next spring.", "Latn"),
    "de": ("Die Bundesregierung hat am Mittwoch ein neues Gesetz zur Förderung erneuerbarer Energien beschlossen.", "Latn"),
    "fr": ("Le conseil municipal a voté hier soir le budget de la ville pour l'année prochaine.", "Latn"),
    "pl": ("Wczoraj wieczorem rada miasta przyjęła budżet na przyszły rok po długiej dyskusji.", "Latn"),
    "ru": ("Вчера вечером городской совет утвердил бюджет на следующий год после долгой дискуссии.", "Cyrl"),
    "uk": ("Учора ввечері міська рада ухвалила бюджет на наступний рік після тривалої дискусії.", "Cyrl"),
    "el": ("Χθες το βράδυ το δημοτικό συμβούλιο ενέκρινε τον προϋπολογισμό για το επόμενο έτος.", "Grek"),
    "ar": ("وافق مجلس المدينة مساء أمس على ميزانية العام المقبل بعد نقاش طويل.", "Arab"),
    "zh": ("昨天晚上，市议会经过长时间的讨论，通过了明年的预算。", "Hani"),
    "ja": ("昨日の夜、市議会は長い議論の末に来年度の予算を可決しました。", "Jpan"),
    "ko": ("어제 저녁 시의회는 오랜 논의 끝에 내년 예산을 통과시켰습니다.", "Hang"),
}  # fmt: skip


def identify(texts: list[str]) -> list[Document]:
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    return list(LanguageIdentifier().run(iter(docs), rank=0, world_size=1))


def test_identifies_language_and_script_in_many_scripts():
    docs = identify([text for text, _ in SAMPLES.values()])
    for (language, (_, script)), doc in zip(SAMPLES.items(), docs, strict=True):
        assert doc.metadata[fields.LANGUAGE] == language
        assert doc.metadata[fields.SCRIPT] == script
        assert 0.5 < doc.metadata[fields.LANGUAGE_SCORE] <= 1.0


def test_dominant_script_counts_code_points():
    assert dominant_script("Привет, мир! Hello") == "Cyrl"
    assert dominant_script("東京は日本の首都です") == "Jpan"  # Han with Hiragana
    assert dominant_script("北京是中国的首都") == "Hani"
    assert dominant_script("서울은 한국의 수도입니다") == "Hang"
    assert dominant_script("שלום עולם") == "Hebr"
    assert dominant_script("12345 !!! 678") is None


def test_long_document_is_read_in_spread_windows():
    # An English menu at the top of a long German page: a prefix would say English, windows say German.
    menu = "Home | About us | Contact | Login | Register | Search | Privacy policy | Terms of use\n" * 6
    body = (
        "Die Stadtverwaltung hat heute angekündigt, dass die Bauarbeiten an der Brücke im Herbst "
        "beginnen und voraussichtlich zwei Jahre dauern werden. "
    ) * 60
    text = menu + body
    window_text = text_for_prediction(text, max_chars=2000, num_windows=4)
    assert len(window_text) <= 2000 + 4
    assert text_for_prediction(body[:500], 2000, 4) == body[:500]
    assert identify([text])[0].metadata[fields.LANGUAGE] == "de"


def test_selector_drops_unselected_and_low_score_with_details():
    config = LanguageIdConfig(languages=("de", "fr", "ca"), min_score=0.65, min_score_by_language={"ca": 0.3})
    docs = [
        Document("a", "de", metadata={fields.LANGUAGE: "de", fields.LANGUAGE_SCORE: 0.97}),
        Document("b", "en", metadata={fields.LANGUAGE: "en", fields.LANGUAGE_SCORE: 0.99}),
        Document("c", "fr-low", metadata={fields.LANGUAGE: "fr", fields.LANGUAGE_SCORE: 0.4}),
        Document("d", "ca-low", metadata={fields.LANGUAGE: "ca", fields.LANGUAGE_SCORE: 0.4}),
    ]
    selector = LanguageSelector(config)
    results = {doc.id: selector.filter(doc) for doc in docs}
    assert results["de"] is True and results["ca-low"] is True  # ca's own threshold is 0.3
    assert results["en"] == (False, reasons.LANGUAGE_NOT_SELECTED)
    assert docs[1].metadata[fields.FILTER_DETAILS]["value"] == "en"
    assert results["fr-low"] == (False, reasons.LOW_LANGUAGE_SCORE)
    assert docs[2].metadata[fields.FILTER_DETAILS] == {
        "rule": "min_score", "value": 0.4, "threshold": 0.65, "language": "fr",
    }  # fmt: skip
    kept = list(selector.run(iter(docs), rank=0, world_size=1))
    assert [d.id for d in kept] == ["de", "ca-low"]


def test_selector_requires_language_identification_first():
    with pytest.raises(ValueError, match="LanguageIdentifier"):
        LanguageSelector().filter(Document("text", "x"))


def test_model_hash_is_verified():
    with pytest.raises(ValueError, match="sha256"):
        load_lid_model(dataclasses.replace(LanguageIdConfig(), model_sha256="0" * 64))
    assert len(load_lid_model(LanguageIdConfig()).labels) == 176


def test_accuracy_on_sample_crawl(tmp_path):
    sample_crawl = pytest.importorskip("sample.crawl")
    truth = sample_crawl.generate_snapshot(tmp_path / "snap", seed=0, num_documents=1500)
    clean = [r for r in snapshot_records(tmp_path / "snap", truth) if r["kind"] == "clean"]
    docs = identify([r["text"] for r in clean])
    wrong = collections.Counter(
        (r["true_language"], d.metadata[fields.LANGUAGE])
        for r, d in zip(clean, docs, strict=True)
        if d.metadata[fields.LANGUAGE] != r["true_language"]
    )
    accuracy = 1 - sum(wrong.values()) / len(clean)
    print(f"language id accuracy on {len(clean)} clean documents: {accuracy:.4f}; confusions {dict(wrong)}")
    assert len(clean) > 800
    assert accuracy >= 0.95, wrong
    # The selector with the default thresholds keeps the clean documents of every sampled language.
    selector = LanguageSelector(
        LanguageIdConfig(languages=tuple(sorted({r["true_language"] for r in clean})))
    )
    assert len(list(selector.run(iter(docs), rank=0, world_size=1))) >= 0.98 * len(clean)
