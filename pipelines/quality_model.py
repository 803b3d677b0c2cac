"""A learned quality score: a fastText classifier of reference prose against rejected crawl (DCLM).

    train_quality_classifier   reference set + raw crawl  -> quality_classifier  (model, splits, metrics)
    score_quality              deduplicated + classifier  -> quality_scored      (score, percentile)

Positives are pages of a curated reference set (by default the bundled, human-written Debian
documentation in ``sample/sources``). Two precautions keep the held-out metrics honest:

- decontamination: a reference paragraph found in the raw crawl (whole, or as the start or the end
  of a crawl line) is left out, and no reference page spans it, so no text is labelled both ways
  and no crawl page is a copy of a positive;
- held out by whole document: every page of a reference document (and every crawl document) lands
  on the same side of the train/test split, so no test text was seen in training.

Negatives are raw crawl documents. The default, DCLM's, is a seeded random sample of them
(``negatives="raw"``): a crawl page is a web page, navigation, bylines, share buttons, tag lists,
footers and cookie banners around (at best) an article, and most of it is worse than the reference.
``negatives="rejected"`` takes only the raw documents the heuristic steps rejected (their
``excluded/`` shards: spam, repetition, broken text). Either way the negatives' languages are those
the ``language_identified`` version among ``rejected`` gave them, and positives are drawn per
language in proportion to the negatives, so the classifier cannot score a language instead of its
quality; ``metrics.json`` also gives the AUC within each language.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipelines import fields
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.fasttext_model import FastTextModel, train_supervised
from pipelines.quality_reference import contaminated_paragraphs, read_reference, reference_pages
from pipelines.shards import DocumentShardReader, DocumentShardWriter
from pipelines.steps import StepResult, finish_step, has_documents, new_staging, task_logs
from records.assets import QUALITY_CLASSIFIER, QUALITY_SCORED
from records.canonical import write_record
from records.documents import EXCLUDED, SHARDS
from records.layout import DataLayout, checkout_path
from records.manifest import Manifest, load_manifest, version_folder
from records.quality import CLASSIFIER, EXAMPLES, METRICS, REFERENCE_SET, TEST_SPLIT, TRAIN_SPLIT

POSITIVE, NEGATIVE = "reference", "crawl"
# Relative to the checkout (records.layout.checkout_path): the default enters the classifier's lineage.
SAMPLE_REFERENCE_DIR = "sample/sources"


@dataclass(frozen=True)
class QualityModelConfig:
    """How the reference set, the negatives and the fastText model are made."""

    reference_dir: str = SAMPLE_REFERENCE_DIR  # relative: a folder of the checkout; <lang>.jsonl.gz files of {"id", "language", "text"}
    reference_description: str = (
        "Debian documentation and translated man pages (sample/sources): human-written, edited, "
        "translated prose in 21 languages; see sample/README.md and sample/SOURCES.json"
    )
    # "raw": a random raw sample (DCLM); "rejected": raw documents the heuristic steps excluded
    negatives: str = "raw"
    max_negatives: int = 20_000
    positives_per_negative: float = 4.0  # per language
    page_words: int = 100  # reference pages: runs of paragraphs of about this many words (CJK: chars / 2)
    test_fraction: float = 0.2
    threshold: float = 0.5  # for precision and recall
    epoch: int = 25
    lr: float = 0.5
    dim: int = 32
    word_ngrams: int = 2
    bucket: int = 50_000  # hashed n-gram rows: the model file is about bucket * dim * 4 bytes


def _shard_texts(folder: Path, columns: Sequence[str] = ("id", "text", fields.LANGUAGE)) -> Iterator[dict]:
    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1000, columns=list(columns)):
            yield from batch.to_pylist()


def _unit_hash(key: str, seed: int) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64


def _split(key: str, seed: int, test_fraction: float) -> str:
    return "test" if _unit_hash(key, seed) < test_fraction else "train"


def _descends_from(layout: DataLayout, manifest: Manifest, ancestor: str) -> bool:
    refs = list(manifest.parents)
    while refs:
        ref = refs.pop()
        if ref == ancestor:
            return True
        refs.extend(load_manifest(version_folder(layout.datasets, ref)).parents)
    return False


def _negatives(
    layout: DataLayout, raw: Manifest, rejected: Sequence[Manifest], config: QualityModelConfig, seed: int
):
    for version in rejected:
        if not _descends_from(layout, version, raw.ref):
            raise ValueError(
                f"{version.ref} does not descend from {raw.ref}: pass the steps run on that raw version"
            )
    if config.negatives == "raw":
        folders = [version_folder(layout.datasets, raw.ref) / SHARDS]
    elif config.negatives == "rejected":
        folders = [version_folder(layout.datasets, v.ref) / EXCLUDED for v in rejected]
    else:
        raise ValueError(f"QualityModelConfig.negatives: {config.negatives!r}; use 'rejected' or 'raw'")
    rows = (
        {
            "source": r["id"],
            "language": r[fields.LANGUAGE],
            "text": r["text"],
            "reason": r[fields.FILTER_REASON],
            "sha256": r[fields.SHA256],
        }
        for folder in folders
        for r in _shard_texts(folder, ("id", "text", fields.LANGUAGE, fields.FILTER_REASON, fields.SHA256))
    )
    # A seeded random subset, holding no more than max_negatives texts at a time. Drawn by text, so
    # a crawl's exact duplicates are drawn together, and one of them kept: the same text must not
    # land on both sides of the split.
    chosen = heapq.nsmallest(
        config.max_negatives, rows, key=lambda r: (_unit_hash(r["sha256"], seed), r["source"])
    )
    chosen = [r for k, r in enumerate(chosen) if k == 0 or r["sha256"] != chosen[k - 1]["sha256"]]
    if not chosen:
        raise ValueError(
            f"no negatives for {raw.ref} ({config.negatives!r}): pass the versions whose excluded/ hold rejected crawl"
        )
    _identified_languages(layout, chosen, rejected)
    return chosen


def _identified_languages(layout: DataLayout, rows: list[dict], versions: Sequence[Manifest]) -> None:
    """Fill in the language of ``rows`` that have none (raw documents) from ``versions`` that
    identified it (kept or excluded). Memory: the rows, never the versions."""
    missing = {row["source"]: row for row in rows if not row["language"]}
    for version in versions:
        folder = version_folder(layout.datasets, version.ref)
        for sub in (SHARDS, EXCLUDED):
            for r in _shard_texts(folder / sub, ("id", fields.LANGUAGE)):
                row = missing.get(r["id"])
                if row is not None and r[fields.LANGUAGE]:
                    row["language"] = r[fields.LANGUAGE]


def _match_languages(pages: list[dict], negatives: list[dict], ratio: float, seed: int) -> list[dict]:
    """Positives drawn per language in proportion to the negatives' languages (from every language
    alike for negatives not yet language-identified, as raw documents are)."""
    wanted = Counter(n["language"] or "" for n in negatives)
    by_language: dict[str, list[dict]] = defaultdict(list)
    for page in pages:
        by_language[page["language"]].append(page)
    rng = random.Random(seed)
    chosen = []
    for language in sorted(wanted, key=lambda lang: (not lang, lang)):  # unidentified last
        taken = {id(p) for p in chosen}
        pool = by_language.get(language, []) if language else [p for p in pages if id(p) not in taken]
        rng.shuffle(pool)
        chosen.extend(pool[: round(ratio * wanted[language])])
    return chosen


def roc_auc(positive_scores: Sequence[float], negative_scores: Sequence[float]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting one half (the Mann-Whitney U statistic over the product of the counts)."""
    scores = np.asarray(list(positive_scores) + list(negative_scores), dtype=np.float64)
    ordered = np.sort(scores)
    ranks = (np.searchsorted(ordered, scores, "left") + np.searchsorted(ordered, scores, "right") + 1) / 2
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    assert n_pos and n_neg, "AUC needs both classes"
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def positive_probability(model: FastTextModel, text: str) -> float:
    """P(reference) of ``text`` under a model trained by ``train_quality_classifier``."""
    labels = dict(model.predict([text], k=2)[0])
    return labels[POSITIVE] if POSITIVE in labels else 1.0 - labels.get(NEGATIVE, 0.0)


def _write_split(path: Path, examples: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(f"__label__{example['label']} {' '.join(example['text'].split())}\n")


def _metrics(model: FastTextModel, test: list[dict], threshold: float) -> dict:
    scores = [positive_probability(model, e["text"]) for e in test]
    labels = [e["label"] == POSITIVE for e in test]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    true_pos = sum(s >= threshold for s in pos)
    predicted_pos = true_pos + sum(s >= threshold for s in neg)
    by_reason: dict[str, list[float]] = defaultdict(list)
    by_language: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for example, score in zip(test, scores, strict=True):
        if example["label"] == NEGATIVE and example.get("reason"):
            by_reason[example["reason"]].append(score)
        by_language[example["language"] or "unknown"][example["label"] == NEGATIVE].append(score)
    return {
        "auc": round(roc_auc(pos, neg), 6),
        "auc_by_reason": {r: round(roc_auc(pos, s), 6) for r, s in sorted(by_reason.items())},
        # Within one language only: a classifier that scored languages would not reach these.
        "auc_by_language": {
            language: round(roc_auc(p, n), 6) for language, (p, n) in sorted(by_language.items()) if p and n
        },
        "precision": round(true_pos / predicted_pos, 6) if predicted_pos else 0.0,
        "recall": round(true_pos / len(pos), 6),
        "threshold": threshold,
        "test_positives": len(pos),
        "test_negatives": len(neg),
    }


def train_quality_classifier(
    layout: DataLayout,
    raw_version: Manifest,
    rejected: Sequence[Manifest] = (),
    *,
    config: QualityModelConfig = QualityModelConfig(),
    seed: int = 0,
) -> StepResult:
    """Train the classifier on ``raw_version``'s crawl (negatives: a sample of its raw documents, or
    the excluded documents of the ``rejected`` versions; those must descend from it and give the
    negatives' languages) against the decontaminated reference set, and seal a
    ``quality_classifier`` version: ``model.bin``, ``train.txt``/``test.txt``, ``examples.parquet``
    (split, label, document, language, text sha256), ``metrics.json`` (AUC, precision, recall on the
    held-out split, overall and per language) and ``reference_set.json``. Same inputs and seed,
    same bytes."""
    negatives = _negatives(layout, raw_version, rejected, config, seed)
    documents, files = read_reference(checkout_path(config.reference_dir))
    crawl = _shard_texts(version_folder(layout.datasets, raw_version.ref) / SHARDS, ("text",))
    contaminated = contaminated_paragraphs(documents, (row["text"] for row in crawl))
    pages = reference_pages(documents, contaminated, config.page_words)
    reference = {
        "files": files,
        "num_documents": len(documents),
        "num_paragraphs": sum(len(d["paragraphs"]) for d in documents),
        "num_contaminated": sum(map(len, contaminated.values())),
    }
    positives = _match_languages(pages, negatives, config.positives_per_negative, seed)
    examples = [{**e, "label": POSITIVE, "reason": None} for e in positives]
    examples += [{**e, "label": NEGATIVE} for e in negatives]
    for example in examples:
        example["split"] = _split(example["source"], seed, config.test_fraction)
    random.Random(seed).shuffle(examples)
    train = [e for e in examples if e["split"] == "train"]
    test = [e for e in examples if e["split"] == "test"]

    staging = new_staging(layout, QUALITY_CLASSIFIER)
    _write_split(staging / TRAIN_SPLIT, train)
    _write_split(staging / TEST_SPLIT, test)
    model = train_supervised(
        staging / TRAIN_SPLIT, epoch=config.epoch, lr=config.lr, dim=config.dim, wordNgrams=config.word_ngrams,
        bucket=config.bucket, minCount=1, thread=1, seed=seed, verbose=0,
    )  # fmt: skip
    model.save(staging / CLASSIFIER)
    metrics = _metrics(model, test, config.threshold)
    metrics["train_positives"] = sum(e["label"] == POSITIVE for e in train)
    metrics["train_negatives"] = len(train) - metrics["train_positives"]
    write_record(staging / METRICS, metrics)
    pq.write_table(
        pa.table({
            "split": [e["split"] for e in examples], "label": [e["label"] for e in examples],
            "document": [e["source"] for e in examples], "language": [e["language"] for e in examples],
            "reason": [e["reason"] for e in examples],
            "sha256": [hashlib.sha256(e["text"].encode()).hexdigest() for e in examples],
        }),
        staging / EXAMPLES, compression="zstd",
    )  # fmt: skip
    reference.update(
        description=config.reference_description,
        selection=(
            "runs of consecutive paragraphs (whitespace-normalized lines) of the documents of "
            f"reference_dir, about {config.page_words} words each, holding no paragraph found in "
            f"{raw_version.ref} (whole, or as the start or the end of a line: left_out); positives "
            "drawn per language in proportion to the negatives; train/test split by whole document"
        ),
        left_out={document: sorted(indices) for document, indices in sorted(contaminated.items())},
        num_pages=len(pages),
        num_positives=len(positives),
        negatives={"kind": config.negatives, "versions": [v.ref for v in rejected], "count": len(negatives)},
    )
    write_record(staging / REFERENCE_SET, reference)
    return finish_step(
        layout, staging, asset=QUALITY_CLASSIFIER, snapshot=raw_version.snapshot,
        parents=(raw_version.ref, *(v.ref for v in rejected)),
        config={"quality_model": asdict(config), "seed": seed, "metrics": metrics},
    )  # fmt: skip


class QualityScorer(PipelineStep):
    """Sets ``quality_score``: P(reference) under the classifier at ``model_path``."""

    name = "🏅 Quality score"
    type = "🔢 - SCORER"

    def __init__(self, model_path: str):
        super().__init__()
        self.model_path = model_path

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        model = FastTextModel.load(self.model_path)
        for document in data:
            with self.track_time():
                document.metadata[fields.QUALITY_SCORE] = positive_probability(model, document.text)
            yield document


class QualityPercentile(PipelineStep):
    """Sets ``quality_percentile``: the share (0-100) of its language's documents that score lower,
    ties counting one half, from the sorted scores per language stored at ``ranks_path`` (.npz)."""

    name = "🏅 Quality percentile"
    type = "🔢 - SCORER"

    def __init__(self, ranks_path: str):
        super().__init__()
        self.ranks_path = ranks_path

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with np.load(self.ranks_path) as stored:
            ranks = {language: stored[language] for language in stored.files}
        for document in data:
            scores = ranks[document.metadata.get(fields.LANGUAGE) or "unknown"]
            score = document.metadata[fields.QUALITY_SCORE]
            below = np.searchsorted(scores, score, "left")
            equal = np.searchsorted(scores, score, "right") - below
            document.metadata[fields.QUALITY_PERCENTILE] = round(
                100.0 * (below + 0.5 * equal) / len(scores), 4
            )
            yield document


def _sorted_scores(folder: Path, out: Path) -> None:
    """Pass 2: every document's score, sorted per language (memory: one float per document)."""
    by_language: dict[str, list[float]] = defaultdict(list)
    for row in _shard_texts(folder, (fields.LANGUAGE, fields.QUALITY_SCORE)):
        by_language[row[fields.LANGUAGE] or "unknown"].append(row[fields.QUALITY_SCORE])
    np.savez(
        out, **{language: np.sort(np.asarray(s, dtype=np.float64)) for language, s in by_language.items()}
    )


def score_quality(
    layout: DataLayout, parent: Manifest, classifier: Manifest, executor: ExecutorConfig
) -> StepResult:
    """Seal a ``quality_scored`` version: ``parent``'s documents, in the same shards and order, with
    ``quality_score`` and ``quality_percentile`` (within the document's language, over the version)."""
    model_path = version_folder(layout.datasets, classifier.ref) / CLASSIFIER
    if classifier.asset != QUALITY_CLASSIFIER or not model_path.is_file():
        raise ValueError(f"{classifier.ref} is not a {QUALITY_CLASSIFIER} version with a model.bin")
    staging = new_staging(layout, QUALITY_SCORED)
    work = layout.work / "quality" / staging.name
    shards = version_folder(layout.datasets, parent.ref) / SHARDS
    try:
        if has_documents(shards):  # else an empty version, like the parent
            run_pipeline(
                [
                    DocumentShardReader(shards),
                    QualityScorer(str(model_path)),
                    DocumentShardWriter(work / "scored"),
                ],
                logging_dir=task_logs(layout, staging) / "score",
                config=executor,
            )
            work.mkdir(parents=True, exist_ok=True)
            _sorted_scores(work / "scored", work / "ranks.npz")
            run_pipeline(
                [
                    DocumentShardReader(work / "scored"),
                    QualityPercentile(str(work / "ranks.npz")),
                    DocumentShardWriter(staging / SHARDS),
                ],
                logging_dir=task_logs(layout, staging) / "rank",
                config=executor,
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return finish_step(
        layout, staging, asset=QUALITY_SCORED, snapshot=parent.snapshot, parents=(parent.ref, classifier.ref),
        config={"classifier": classifier.ref, "tasks": executor.tasks},
    )  # fmt: skip
