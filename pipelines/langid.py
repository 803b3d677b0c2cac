"""Language identification with fastText's ``lid.176`` model, and selection by language and score.

``LanguageIdentifier`` sets ``fields.LANGUAGE`` (a lid.176 code: "de", "zh", "ja"...),
``fields.LANGUAGE_SCORE`` (its probability) and ``fields.SCRIPT`` (ISO 15924). ``LanguageSelector``
then drops documents outside the configured languages or below their score threshold.

Long documents are not predicted whole: the model reads ``config.num_windows`` windows of text
spread evenly over the document, ``config.max_chars`` characters in all. fastText averages word
vectors, so a few thousand characters decide as well as the whole text, and windows spread over the
document (rather than a prefix) are not fooled by a navigation menu or cookie banner at its top.
The windows are fixed by the text alone, so the result is deterministic.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import regex
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.batching import batched

from pipelines import fields, reasons
from pipelines.fasttext_model import FastTextModel, file_sha256
from records.layout import checkout_path

# Relative to the checkout (records.layout.checkout_path): the default enters every version's lineage.
LID_MODEL_FILE = "resources/models/lid.176.8f3472cf.ftz"
LID_MODEL_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"

# Languages whose closest relatives in lid.176 take a share of the probability on clean text
# (ca/es, da/no/sv, id/ms, uk/ru, cs/sk, pt/gl, hr/sr/bs): a lower threshold keeps their real
# documents; the score still separates them from noise.
DEFAULT_MIN_SCORE_BY_LANGUAGE = {
    "ca": 0.5, "da": 0.5, "no": 0.5, "nn": 0.4, "id": 0.5, "ms": 0.5, "uk": 0.5, "cs": 0.5,
    "sk": 0.5, "gl": 0.5, "hr": 0.4, "sr": 0.4, "bs": 0.3,
}  # fmt: skip

# ISO 15924 script of each lid.176 language written (almost) always in one script. Languages not
# listed (sr: Cyrl or Latn; rare ones) get the script most of their letters are written in.
SCRIPT_BY_LANGUAGE = {
    **dict.fromkeys(
        [
            "af", "an", "ast", "az", "bs", "ca", "cs", "cy", "da", "de", "en", "eo", "es", "et", "eu", "fi",
            "fr", "fy", "ga", "gd", "gl", "hr", "hu", "ia", "id", "ie", "ilo", "io", "is", "it", "jbo", "la",
            "lb", "lt", "lv", "mg", "ms", "mt", "nl", "nn", "no", "oc", "pl", "pt", "ro", "sk", "sl", "sq",
            "sv", "sw", "tl", "tr", "uz", "vi", "wa", "war",
        ],
        "Latn",
    ),
    **dict.fromkeys(["ru", "uk", "be", "bg", "mk", "kk", "ky", "tg", "tt", "ba", "cv", "mn", "sah", "ce", "os"], "Cyrl"),
    **dict.fromkeys(["ar", "fa", "ur", "ps", "ckb", "ug", "sd", "azb", "arz"], "Arab"),
    **dict.fromkeys(["hi", "mr", "ne", "sa", "bh", "new", "mai"], "Deva"),
    "el": "Grek", "he": "Hebr", "yi": "Hebr", "hy": "Armn", "ka": "Geor", "th": "Thai", "lo": "Laoo",
    "km": "Khmr", "my": "Mymr", "bn": "Beng", "as": "Beng", "gu": "Gujr", "pa": "Guru", "ta": "Taml",
    "te": "Telu", "kn": "Knda", "ml": "Mlym", "si": "Sinh", "am": "Ethi", "bo": "Tibt", "dv": "Thaa",
    "zh": "Hani", "wuu": "Hani", "yue": "Hani", "ja": "Jpan", "ko": "Hang",
}  # fmt: skip

# Scripts counted when a language has no entry above (Unicode script property names).
_COUNTED_SCRIPTS = {
    "Latn": "Latin", "Cyrl": "Cyrillic", "Grek": "Greek", "Arab": "Arabic", "Hebr": "Hebrew",
    "Deva": "Devanagari", "Hani": "Han", "Hira": "Hiragana", "Kana": "Katakana", "Hang": "Hangul",
    "Thai": "Thai", "Armn": "Armenian", "Geor": "Georgian", "Beng": "Bengali", "Taml": "Tamil",
    "Ethi": "Ethiopic",
}  # fmt: skip
_SCRIPT_RUN = regex.compile("|".join(f"(?P<{k}>\\p{{Script={v}}}+)" for k, v in _COUNTED_SCRIPTS.items()))


@dataclass(frozen=True)
class LanguageIdConfig:
    """Language identification and selection. ``languages`` None keeps every language; a document
    is kept if its score reaches ``min_score_by_language[language]``, else ``min_score``."""

    languages: tuple[str, ...] | None = None
    min_score: float = 0.65
    min_score_by_language: dict[str, float] | None = field(
        default_factory=lambda: dict(DEFAULT_MIN_SCORE_BY_LANGUAGE)
    )
    model_path: str = LID_MODEL_FILE  # relative: a file of the checkout
    model_sha256: str = LID_MODEL_SHA256
    max_chars: int = 2000  # characters the model reads from one document
    num_windows: int = 4  # evenly spread windows those characters are taken from
    batch_size: int = 256

    def threshold(self, language: str) -> float:
        """The minimum score a document of ``language`` needs."""
        return (self.min_score_by_language or {}).get(language, self.min_score)


def load_lid_model(config: LanguageIdConfig) -> FastTextModel:
    """The language id model, after checking its sha256. Raises ``ValueError`` if it differs."""
    path = checkout_path(config.model_path)
    actual = file_sha256(path)
    if actual != config.model_sha256:
        raise ValueError(
            f"language id model {config.model_path} has sha256 {actual}, expected {config.model_sha256}; "
            "restore the vendored file (see resources/models/README.md) or set LanguageIdConfig.model_sha256"
        )
    return FastTextModel.load(str(path))


def text_for_prediction(text: str, max_chars: int, num_windows: int) -> str:
    """The text itself if it is at most ``max_chars`` long, else ``num_windows`` windows of
    ``max_chars // num_windows`` characters at evenly spaced offsets, each cut at whitespace."""
    if len(text) <= max_chars:
        return text
    width = max_chars // num_windows
    step = (len(text) - width) / max(1, num_windows - 1)
    windows = []
    for i in range(num_windows):
        start = int(i * step)
        window = text[start : start + width]
        # Drop the partial words at both cut ends (CJK windows have no spaces and stay whole).
        if start > 0 and " " in window:
            window = window.split(" ", 1)[1]
        if start + width < len(text) and " " in window:
            window = window.rsplit(" ", 1)[0]
        windows.append(window)
    return " ".join(windows)


def dominant_script(text: str) -> str | None:
    """The ISO 15924 script most letters of ``text`` are written in; Hiragana or Katakana with Han
    count as "Jpan". None if the text has no letters of a counted script."""
    counts: collections.Counter[str] = collections.Counter()
    for match in _SCRIPT_RUN.finditer(text):
        counts[match.lastgroup] += len(match.group())
    if not counts:
        return None
    if counts["Hira"] + counts["Kana"] > 0.05 * counts["Hani"] and counts["Hira"] + counts["Kana"] + counts[
        "Hani"
    ] >= max(counts.values()):
        return "Jpan"
    return counts.most_common(1)[0][0]


def script_of(language: str, text: str) -> str | None:
    """The script of a document in ``language``: from the language when it has one script, else counted."""
    return SCRIPT_BY_LANGUAGE.get(language) or dominant_script(text)


class LanguageIdentifier(PipelineStep):
    """Sets LANGUAGE, LANGUAGE_SCORE and SCRIPT on every document; drops nothing."""

    name = "🌐 Language id"
    type = "🏷 - ANNOTATOR"

    def __init__(self, config: LanguageIdConfig = LanguageIdConfig()):
        super().__init__()
        self.config = config
        self._model: FastTextModel | None = None

    @property
    def model(self) -> FastTextModel:
        if self._model is None:  # loaded in the worker, not pickled with the pipeline
            self._model = load_lid_model(self.config)
        return self._model

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        config = self.config
        for batch in batched(data, config.batch_size):
            with self.track_time("batch"):
                texts = [text_for_prediction(doc.text, config.max_chars, config.num_windows) for doc in batch]
                predictions = self.model.predict(texts, k=1)
            for doc, prediction, text in zip(batch, predictions, texts, strict=True):
                language, score = prediction[0] if prediction else ("unknown", 0.0)
                doc.metadata[fields.LANGUAGE] = language
                doc.metadata[fields.LANGUAGE_SCORE] = round(score, 4)
                doc.metadata[fields.SCRIPT] = script_of(language, text)
                self.stat_update(language)
                self.update_doc_stats(doc)
                yield doc


class LanguageSelector(BaseFilter):
    """Keeps documents whose LANGUAGE is selected and whose LANGUAGE_SCORE reaches its threshold."""

    name = "🌐 Language selector"

    def __init__(
        self, config: LanguageIdConfig = LanguageIdConfig(), exclusion_writer: DiskWriter | None = None
    ):
        super().__init__(exclusion_writer)
        self.config = config
        self.languages = frozenset(config.languages) if config.languages is not None else None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if fields.LANGUAGE not in doc.metadata:
            raise ValueError(f"document {doc.id} has no {fields.LANGUAGE!r}: run LanguageIdentifier first")
        language = doc.metadata[fields.LANGUAGE]
        score = doc.metadata[fields.LANGUAGE_SCORE]
        if self.languages is not None and language not in self.languages:
            doc.metadata[fields.FILTER_DETAILS] = {
                "rule": "languages",
                "value": language,
                "threshold": sorted(self.languages),
                "language_score": score,
            }
            return False, reasons.LANGUAGE_NOT_SELECTED
        threshold = self.config.threshold(language)
        if score < threshold:
            doc.metadata[fields.FILTER_DETAILS] = {
                "rule": "min_score",
                "value": score,
                "threshold": threshold,
                "language": language,
            }
            return False, reasons.LOW_LANGUAGE_SCORE
        return True
