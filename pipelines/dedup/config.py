"""Configuration and result of the deduplication step."""

from __future__ import annotations

from dataclasses import dataclass, field

# Languages written without spaces between words: shingles are character n-grams there.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})


@dataclass(frozen=True)
class DedupConfig:
    """How documents are compared.

    Near-duplicates are found with MinHash LSH: 3-gram word shingles of the normalized text
    (5-gram character shingles in ``no_space_languages``), ``num_bands`` x ``rows_per_band``
    permutations; two documents are candidates when all rows of one band agree (probability
    ``1 - (1 - s**rows)**bands`` at Jaccard ``s``: about 0.99 at 0.5, 0.88 at 0.4 and 0.23 at 0.2
    with the defaults). A candidate pair is confirmed when its signatures estimate a Jaccard of at
    least ``min_jaccard`` or a containment of the smaller document in the larger of at least
    ``min_containment`` (``verify.py``); ``min_jaccard`` 0 confirms every candidate, as FineWeb does.
    Chosen on the independent set in ``tests/data/neardup`` (``bench/neardup.py``; numbers in
    docs/dedup.md): FineWeb's 5-grams and 14 x 8 bands found 0.51 of its duplicates.
    """

    n_grams: int = 3  # words per shingle
    char_n_grams: int = 5  # characters per shingle in NO_SPACE_LANGUAGES
    num_bands: int = 32
    rows_per_band: int = 3
    seed: int = 1  # of the MinHash permutations: all tasks must share it
    min_jaccard: float = 0.6
    min_containment: float = 0.8
    bucket_splits: int = 1  # tasks per band in the bucket stage (each holds 1/splits of the band)
    no_space_languages: frozenset[str] = NO_SPACE_LANGUAGES
    # "global": a document already kept in an earlier snapshot is a duplicate of it (pipelines.dedup.scope);
    # "snapshot": each snapshot on its own, FineWeb's per-dump choice (docs/dedup.md says when)
    scope: str = "global"

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.rows_per_band

    def __post_init__(self):
        if self.n_grams < 1 or self.char_n_grams < 1:
            raise ValueError(
                f"DedupConfig: n_grams and char_n_grams must be >= 1, got {self.n_grams}, {self.char_n_grams}"
            )
        if self.num_bands < 1 or self.rows_per_band < 1 or self.bucket_splits < 1:
            raise ValueError("DedupConfig: num_bands, rows_per_band and bucket_splits must be >= 1")
        if not 0.0 <= self.min_jaccard <= 1.0 or not 0.0 <= self.min_containment <= 1.0:
            raise ValueError(
                f"DedupConfig: min_jaccard and min_containment must be in [0, 1], got {self.min_jaccard}, "
                f"{self.min_containment}"
            )
        if self.scope not in ("global", "snapshot"):
            raise ValueError(f"DedupConfig.scope must be 'global' or 'snapshot', got {self.scope!r}")


@dataclass
class DedupSummary:
    """What one deduplication run did: document counts, drops per reason, and the clusters
    (groups of two or more documents that are exact or near copies of each other)."""

    num_documents: int = 0
    num_kept: int = 0
    removed: dict[str, int] = field(default_factory=dict)  # reason -> documents dropped
    num_clusters: int = 0
    cluster_size_histogram: dict[int, int] = field(default_factory=dict)  # size -> clusters
