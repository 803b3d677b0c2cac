"""A learned quality score: a fastText classifier of reference prose against rejected crawl (DCLM).

    train_quality_classifier   reference set + raw crawl  -> quality_classifier  (model, splits, metrics)
    score_quality              deduplicated + classifier  -> quality_scored      (score, percentile)

Positives are pages of a curated reference set (by default the bundled, human-written Debian
documentation in ``sample/sources``). Two precautions keep the held-out metrics honest:

- decontamination: a reference document that shares any paragraph with the raw crawl is left out,
  so no text is labelled both ways and no crawl page is a copy of a positive;
- held out by whole document: every page of a reference document (and every crawl document) lands
  on the same side of the train/test split, so no test text was seen in training.

Negatives are raw crawl documents. DCLM takes a random sample of them (``negatives="raw"``), which
suits a real crawl, where most pages are worse than the reference. The bundled sample's crawl is cut
from the reference prose itself, so there most raw pages *are* reference text; the default
(``negatives="rejected"``) takes the raw crawl documents that the heuristic steps rejected (their
``excluded/`` shards: spam, repetition, broken text). Positives are drawn per language in proportion
to the negatives, so the classifier cannot score a language instead of its quality.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import json
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipelines import fields
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.fasttext_model import FastTextModel, file_sha256, train_supervised
from pipelines.shards import DocumentShardReader, DocumentShardWriter
from pipelines.steps import StepResult, finish_step, new_staging, task_logs
from provenance.layout import DataLayout
from provenance.manifest import Manifest, load_manifest, version_folder

QUALITY_CLASSIFIER = "quality_classifier"
QUALITY_SCORED = "quality_scored"
POSITIVE, NEGATIVE = "reference", "crawl"
SAMPLE_REFERENCE = Path(__file__).resolve().parent.parent / "sample" / "sources"
CJK = {"ja", "zh"}


@dataclass(frozen=True)
class QualityModelConfig:
    """How the reference set, the negatives and the fastText model are made."""

    reference_dir: str = str(SAMPLE_REFERENCE)  # <lang>.jsonl.gz files of {"id", "language", "text"}
    reference_description: str = (
        "Debian documentation and translated man pages (sample/sources): human-written, edited, "
        "translated prose in 21 languages; see sample/README.md and sample/SOURCES.json"
    )
    # "rejected": raw documents the heuristic steps excluded; "raw": a random raw sample (DCLM)
    negatives: str = "rejected"
    max_negatives: int = 20_000
    positives_per_negative: float = 4.0  # per language
    page_words: int = 250  # reference pages: runs of paragraphs of about this many words (CJK: chars / 2)
    test_fraction: float = 0.2
    threshold: float = 0.5  # for precision and recall
    epoch: int = 25
    lr: float = 0.5
    dim: int = 32
    word_ngrams: int = 2
    bucket: int = 50_000  # hashed n-gram rows: the model file is about bucket * dim * 4 bytes


def _units(text: str, language: str) -> int:
    return len(text) // 2 if language in CJK else len(text.split())


def _paragraph_key(paragraph: str) -> bytes:
    return hashlib.blake2b(" ".join(paragraph.split()).encode(), digest_size=8).digest()


def _paragraphs(text: str) -> list[str]:
    return [p for p in (line.strip() for line in text.split("\n")) if p]


def _shard_texts(folder: Path, columns: Sequence[str] = ("id", "text", fields.LANGUAGE)) -> Iterator[dict]:
    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1000, columns=list(columns)):
            yield from batch.to_pylist()


def _unit_hash(key: str, seed: int) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64


def _split(key: str, seed: int, test_fraction: float) -> str:
    return "test" if _unit_hash(key, seed) < test_fraction else "train"


def read_reference(reference_dir: Path) -> tuple[list[dict], list[dict]]:
    """The reference documents (id, language, paragraphs) and the files read (name, sha256)."""
    documents, files = [], []
    for path in sorted(Path(reference_dir).glob("*.jsonl.gz")):
        files.append({"path": path.name, "sha256": file_sha256(path)})
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                documents.append(
                    {
                        "id": record["id"],
                        "language": record["language"],
                        "paragraphs": _paragraphs(record["text"]),
                    }
                )
    if not files:
        raise ValueError(f"{reference_dir}: no <lang>.jsonl.gz files (QualityModelConfig.reference_dir)")
    return documents, files


def contaminated_documents(documents: list[dict], crawl_texts: Iterable[str]) -> set[str]:
    """Ids of the reference documents that share a paragraph with any of ``crawl_texts``. Memory is
    bounded by the reference set: the crawl is streamed past a table of its paragraphs."""
    owners: dict[bytes, list[str]] = defaultdict(list)
    for document in documents:
        for paragraph in document["paragraphs"]:
            owners[_paragraph_key(paragraph)].append(document["id"])
    found: set[str] = set()
    for text in crawl_texts:
        for paragraph in _paragraphs(text):
            found.update(owners.get(_paragraph_key(paragraph), ()))
    return found


def reference_pages(documents: list[dict], leave_out: set[str], page_words: int) -> list[dict]:
    """Runs of consecutive paragraphs of about ``page_words`` words (CJK: characters / 2) from every
    document not in ``leave_out``, each with its document id as ``source``."""
    pages = []
    for document in documents:
        if document["id"] in leave_out:
            continue
        language, run = document["language"], []
        for paragraph in document["paragraphs"]:
            run.append(paragraph)
            if sum(_units(p, language) for p in run) >= page_words:
                pages.append({"source": document["id"], "language": language, "text": "\n".join(run)})
                run = []
    return pages


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
    if config.negatives == "raw":
        folders = [version_folder(layout.datasets, raw.ref) / "shards"]
    elif config.negatives == "rejected":
        for version in rejected:
            if not _descends_from(layout, version, raw.ref):
                raise ValueError(
                    f"{version.ref} does not descend from {raw.ref}: pass the steps run on that raw version"
                )
        folders = [version_folder(layout.datasets, v.ref) / "excluded" for v in rejected]
    else:
        raise ValueError(f"QualityModelConfig.negatives: {config.negatives!r}; use 'rejected' or 'raw'")
    rows = (
        {
            "source": r["id"],
            "language": r[fields.LANGUAGE],
            "text": r["text"],
            "reason": r[fields.FILTER_REASON],
        }
        for folder in folders
        for r in _shard_texts(folder, ("id", "text", fields.LANGUAGE, fields.FILTER_REASON))
    )
    # A seeded random subset, holding no more than max_negatives texts at a time.
    chosen = heapq.nsmallest(config.max_negatives, rows, key=lambda r: _unit_hash(r["source"], seed))
    if not chosen:
        raise ValueError(
            f"no negatives for {raw.ref} ({config.negatives!r}): pass the versions whose excluded/ hold rejected crawl"
        )
    return chosen


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


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _metrics(model: FastTextModel, test: list[dict], threshold: float) -> dict:
    scores = [positive_probability(model, e["text"]) for e in test]
    labels = [e["label"] == POSITIVE for e in test]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    true_pos = sum(s >= threshold for s in pos)
    predicted_pos = true_pos + sum(s >= threshold for s in neg)
    by_reason: dict[str, list[float]] = defaultdict(list)
    for example, score in zip(test, scores, strict=True):
        if example["label"] == NEGATIVE and example.get("reason"):
            by_reason[example["reason"]].append(score)
    return {
        "auc": round(roc_auc(pos, neg), 6),
        "auc_by_reason": {r: round(roc_auc(pos, s), 6) for r, s in sorted(by_reason.items())},
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
    """Train the classifier on ``raw_version``'s crawl (negatives: the excluded documents of the
    ``rejected`` versions, which must descend from it; or raw documents) against the decontaminated
    reference set, and seal a ``quality_classifier`` version: ``model.bin``, ``train.txt``/``test.txt``,
    ``examples.parquet`` (split, label, document, language, text sha256), ``metrics.json`` (AUC,
    precision, recall on the held-out split) and ``reference_set.json``. Same inputs and seed, same bytes."""
    negatives = _negatives(layout, raw_version, rejected, config, seed)
    documents, files = read_reference(Path(config.reference_dir))
    crawl = _shard_texts(version_folder(layout.datasets, raw_version.ref) / "shards", ("text",))
    contaminated = contaminated_documents(documents, (row["text"] for row in crawl))
    pages = reference_pages(documents, contaminated, config.page_words)
    reference = {"files": files, "num_documents": len(documents), "num_contaminated": len(contaminated)}
    positives = _match_languages(pages, negatives, config.positives_per_negative, seed)
    examples = [{**e, "label": POSITIVE, "reason": None} for e in positives]
    examples += [{**e, "label": NEGATIVE} for e in negatives]
    for example in examples:
        example["split"] = _split(example["source"], seed, config.test_fraction)
    random.Random(seed).shuffle(examples)
    train = [e for e in examples if e["split"] == "train"]
    test = [e for e in examples if e["split"] == "test"]

    staging = new_staging(layout, QUALITY_CLASSIFIER)
    _write_split(staging / "train.txt", train)
    _write_split(staging / "test.txt", test)
    model = train_supervised(
        staging / "train.txt", epoch=config.epoch, lr=config.lr, dim=config.dim, wordNgrams=config.word_ngrams,
        bucket=config.bucket, minCount=1, thread=1, seed=seed, verbose=0,
    )  # fmt: skip
    model.save(staging / "model.bin")
    metrics = _metrics(model, test, config.threshold)
    metrics["train_positives"] = sum(e["label"] == POSITIVE for e in train)
    metrics["train_negatives"] = len(train) - metrics["train_positives"]
    _write_json(staging / "metrics.json", metrics)
    pq.write_table(
        pa.table({
            "split": [e["split"] for e in examples], "label": [e["label"] for e in examples],
            "document": [e["source"] for e in examples], "language": [e["language"] for e in examples],
            "reason": [e["reason"] for e in examples],
            "sha256": [hashlib.sha256(e["text"].encode()).hexdigest() for e in examples],
        }),
        staging / "examples.parquet", compression="zstd",
    )  # fmt: skip
    reference.update(
        description=config.reference_description,
        selection=(
            "every document of reference_dir that shares no paragraph (whitespace-normalized line) with "
            f"{raw_version.ref}, cut into pages of about {config.page_words} words; positives drawn per "
            "language in proportion to the negatives; train/test split by whole document"
        ),
        left_out=sorted(contaminated),
        num_pages=len(pages),
        num_positives=len(positives),
        negatives={"kind": config.negatives, "versions": [v.ref for v in rejected], "count": len(negatives)},
    )
    _write_json(staging / "reference_set.json", reference)
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
    model_path = version_folder(layout.datasets, classifier.ref) / "model.bin"
    if classifier.asset != QUALITY_CLASSIFIER or not model_path.is_file():
        raise ValueError(f"{classifier.ref} is not a {QUALITY_CLASSIFIER} version with a model.bin")
    staging = new_staging(layout, QUALITY_SCORED)
    work = layout.work / "quality" / staging.name
    try:
        run_pipeline(
            [
                DocumentShardReader(version_folder(layout.datasets, parent.ref) / "shards"),
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
                DocumentShardWriter(staging / "shards"),
            ],
            logging_dir=task_logs(layout, staging) / "rank",
            config=executor,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return finish_step(
        layout, staging, asset=QUALITY_SCORED, snapshot=parent.snapshot, parents=(parent.ref, classifier.ref),
        config={"classifier": classifier.ref, "tasks": executor.tasks},
    )  # fmt: skip
