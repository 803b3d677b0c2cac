"""Thresholds of the heuristic quality filters, per language.

The defaults are the published English ones (Gopher, Rae et al. 2021, table A1; C4; FineWeb), as
datatrove sets them. ``default_language_settings()`` changes them only where a language's writing
makes the English number wrong, each change with its reason beside it. Languages without an entry use
the defaults, except that the stop-word rule is off for languages without a stop-word list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipelines.quality.tokenize import CONTINUOUS_LANGUAGES

# Frequent function words; Gopher's rule wants at least two of them in a document of real prose.
STOP_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("the", "be", "to", "of", "and", "that", "have", "with"),  # Gopher's own list
    "de": ("der", "die", "das", "und", "ist", "nicht", "mit", "von", "zu", "den"),
    "fr": ("le", "la", "les", "de", "et", "est", "un", "une", "des", "que"),
    "es": ("el", "la", "los", "de", "y", "que", "en", "es", "un", "una"),
    "it": ("il", "la", "di", "e", "che", "è", "per", "un", "una", "non"),
    "pt": ("o", "a", "os", "de", "e", "que", "é", "um", "uma", "do", "da"),
    "nl": ("de", "het", "een", "en", "van", "is", "dat", "op", "te", "niet"),
    "pl": ("i", "w", "na", "z", "się", "nie", "jest", "to", "że", "do"),
    "cs": ("a", "se", "na", "je", "v", "že", "to", "s", "z", "do"),
    "sk": ("a", "sa", "na", "je", "v", "že", "to", "s", "z", "do"),
    "sv": ("och", "att", "det", "som", "är", "en", "på", "i", "för", "med"),
    "da": ("og", "at", "det", "er", "en", "i", "til", "på", "for", "med"),
    "no": ("og", "at", "det", "er", "en", "i", "til", "på", "for", "med"),
    "fi": ("ja", "on", "ei", "se", "että", "oli", "kun", "mutta", "tai", "myös"),
    "ro": ("și", "în", "de", "la", "este", "un", "o", "cu", "care", "pe"),
    "ca": ("el", "la", "i", "de", "que", "és", "en", "un", "una", "els"),
    "hu": ("a", "az", "és", "hogy", "nem", "is", "egy", "van", "meg", "ez"),
    "tr": ("ve", "bir", "bu", "da", "de", "için", "ile", "ne", "çok", "olarak"),
    "id": ("yang", "dan", "di", "ini", "itu", "dengan", "untuk", "dari", "ke", "tidak"),
    "vi": ("và", "của", "là", "các", "có", "được", "cho", "trong", "một", "những"),
    "ru": ("и", "в", "не", "на", "что", "это", "с", "как", "по", "он"),
    "uk": ("і", "в", "не", "на", "що", "це", "з", "як", "та", "до"),
    "bg": ("и", "в", "не", "на", "че", "е", "с", "за", "да", "се"),
    "el": ("και", "το", "η", "να", "του", "της", "σε", "με", "ο", "για"),
    # Han and Kana are split into characters, so their stop words are single characters.
    "zh": ("的", "是", "了", "在", "和", "有", "不", "这", "个", "也"),
    "ja": ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し"),
    # Korean words carry their particles, so the stop words are the few that stand alone.
    "ko": ("이", "그", "및", "수", "있다", "있는", "것", "또는", "할", "하는", "있습니다", "등"),
}


@dataclass(frozen=True)
class GopherQualitySettings:
    """Gopher quality rules; None turns a rule off. Word counts are in the tokenize module's words."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1  # "#" and ellipses per word
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    # datatrove's name for the minimum share of words that hold a letter
    max_non_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = STOP_WORDS["en"]


@dataclass(frozen=True)
class GopherRepetitionSettings:
    """Gopher repetition rules (fractions of the text's characters, or of its lines/paragraphs)."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    )
    ngram_joiner: str = " "  # what separates the words of a top n-gram in the text


@dataclass(frozen=True)
class C4Settings:
    """C4's document-level rules. Lines are not removed from the text (datatrove's C4 filter does):
    a kept document stays byte-identical to its input, so its sha256 and exclusions stay true."""

    # C4 asks for 5; on the sample crawl's pages (100 words and up, technical prose with long
    # sentences) 5 dropped 10-30 % of the clean pages of some languages, 3 drops 0-3 %.
    min_num_sentences: int | None = 3  # counted in lines of at least min_words_per_line words
    min_words_per_line: int = 3
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = False  # C4 and FineWeb have it on; it drops every page quoting code
    filter_javascript: bool = True  # lines mentioning javascript do not count as sentences
    filter_policy: bool = True  # nor cookie and terms-of-use lines


@dataclass(frozen=True)
class FineWebSettings:
    """FineWeb's line rules."""

    line_punct_thr: float | None = 0.12
    # Ours: a ratio over one or two lines is 0 or 1/2, not a measure of a list-like page; and lines
    # ending in ":" or ";" (before a list or code) count as ended, as prose writes them.
    line_punct_min_lines: int = 3
    line_end_chars: str = ":;：；"
    short_line_thr: float | None = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float | None = 0.01
    new_line_ratio: float | None = 0.3


@dataclass(frozen=True)
class LanguageSettings:
    """Every threshold of the four filters, for one language."""

    gopher_quality: GopherQualitySettings = GopherQualitySettings()
    gopher_repetition: GopherRepetitionSettings = GopherRepetitionSettings()
    c4: C4Settings = C4Settings()
    fineweb: FineWebSettings = FineWebSettings()


def _with_stop_words(language: str, base: LanguageSettings) -> LanguageSettings:
    words = STOP_WORDS.get(language)
    if words:
        return replace(base, gopher_quality=replace(base.gopher_quality, stop_words=words))
    return replace(base, gopher_quality=replace(base.gopher_quality, stop_words=(), min_stop_words=None))


def default_language_settings() -> dict[str, LanguageSettings]:
    """The per-language settings ``QualityConfig`` uses unless given others."""
    base = LanguageSettings()
    # Compounds written as one word (and, for fi/hu/et, agglutination) make long words common: a
    # technical or legal page passes a mean of 10 characters in these languages but rarely in English.
    long_words = {"de": 12, "nl": 11, "sv": 11, "da": 11, "no": 11, "fi": 13, "hu": 12, "et": 13, "el": 11}
    # A character is a word here (see tokenize): the mean is 1 to 2.4 characters (Latin words such as
    # "Linux" raise it), and 50 characters are not a document. Character n-grams repeat far more than
    # word n-grams (a term is 2-4 characters): top n-grams are taken twice as long, duplicated ones
    # three times (measured on the sample crawl: at twice, 6-8 % of clean zh/ja pages fell).
    continuous = replace(
        base,
        gopher_quality=replace(
            base.gopher_quality, min_doc_words=100, min_avg_word_length=None, max_avg_word_length=3
        ),
        gopher_repetition=replace(
            base.gopher_repetition,
            top_n_grams=((4, 0.2), (6, 0.18), (8, 0.16)),
            dup_n_grams=((15, 0.15), (18, 0.14), (21, 0.13), (24, 0.12), (27, 0.11), (30, 0.10)),
            ngram_joiner="",
        ),
        c4=replace(base.c4, min_words_per_line=6),
        fineweb=replace(base.fineweb, short_line_length=12),
    )
    settings = {}
    for language in sorted(set(STOP_WORDS) | set(long_words) | CONTINUOUS_LANGUAGES):
        current = continuous if language in CONTINUOUS_LANGUAGES else base
        if language in long_words:
            current = replace(
                current,
                gopher_quality=replace(current.gopher_quality, max_avg_word_length=long_words[language]),
            )
        if language == "vi":
            # Vietnamese writes each syllable as a word: clean pages have a mean of 3.1 to 3.9
            # characters, at English's minimum of 3.
            current = replace(current, gopher_quality=replace(current.gopher_quality, min_avg_word_length=2))
        if language == "ko":
            # Korean words are syllable blocks with their particles attached: clean pages have a mean
            # of 2.8 to 4.3 blocks, so English's minimum of 3 drops ordinary prose; lines are shorter.
            current = replace(
                current,
                gopher_quality=replace(
                    current.gopher_quality, min_avg_word_length=1.5, max_avg_word_length=6
                ),
                fineweb=replace(current.fineweb, short_line_length=20),
            )
        settings[language] = _with_stop_words(language, current)
    return settings


@dataclass(frozen=True)
class QualityConfig:
    """The heuristic quality filters to run and their thresholds per language. A language missing from
    ``by_language`` gets ``default`` with the stop-word rule off (there is no list to count)."""

    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4: bool = True
    fineweb: bool = True
    default: LanguageSettings = LanguageSettings()
    by_language: dict[str, LanguageSettings] = field(default_factory=default_language_settings)

    def settings_for(self, language: str | None) -> LanguageSettings:
        """The thresholds for a document in ``language`` (a lid.176 code; None when unknown)."""
        if language in self.by_language:
            return self.by_language[language]
        return _with_stop_words(language or "", self.default)
