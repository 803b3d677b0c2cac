"""Every fact the compliance documents state about a model, read from the records.

Numbers come from DuckDB queries over the catalog (document_index, exclusions, quarantine), the
shards of the model's chain (PII redactions, crawl dates), the manifests, the token shards'
index.json and the model's provenance.json; nothing is typed in. What only the operator can know
(the provider, the controller, the licence, the intended use) is ``ComplianceConfig``, whose
defaults say plainly that they are to be filled in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import duckdb
import yaml

from provenance.audit.model_use import USE_UNKNOWN_TEXT
from provenance.compliance.render import TO_FILL
from records.assets import MODEL_ASSETS, QUALITY_FILTERED, RAW_DOCUMENTS, TOKEN_SHARDS
from records.catalog import refresh_catalog
from records.documents import ROBOTS_RECORD, SHARDS
from records.erasure_match import HOST_PATTERN
from records.layout import DataLayout
from records.manifest import Manifest
from records.models import SEQUENCE_USE as SEQUENCE_USE_FILE
from records.models import load_record
from records.request_index import applied_requests, load_index
from records.token_shards import read_index
from records.verified import is_listed
from records.versions import ancestors, load_versions, resolve

PII_PLACEHOLDERS = {
    "email addresses": "<EMAIL>",
    "IP addresses": "<IP>",
    "phone numbers": "<PHONE>",
}  # pipelines.pii
ROBOTS_REASON, ERASURE_REASON = "optout:robots_txt", "suppressed:erasure_request"  # pipelines.reasons


@dataclass(frozen=True)
class ComplianceConfig:
    """What the records cannot know; each default marks the field as the operator's to fill.
    ``sme``: the provider is an SME or start-up (the template's shorter domain list)."""

    provider: str = TO_FILL
    provider_contact: str = TO_FILL
    authorised_representative: str = TO_FILL
    model_name: str | None = None  # default: "Apertus <recipe> <short version id>"
    release_date: str = TO_FILL
    union_market_date: str = TO_FILL
    licence: str = TO_FILL
    distribution: str = TO_FILL
    intended_tasks: str = TO_FILL
    acceptable_use_policy: str = TO_FILL
    crawler: str = TO_FILL
    controller: str = TO_FILL
    controller_contact: str = TO_FILL
    controller_representative: str = TO_FILL  # joint controller, representative in the Union
    dpo_contact: str = TO_FILL
    recipients: str = TO_FILL
    third_country_transfers: str = TO_FILL
    retention: str = TO_FILL
    sme: bool = False
    # snapshot name -> {"kind": one of SOURCE_KINDS, "description": text}; a snapshot not named is
    # taken for a web crawl ("crawled")
    sources: dict = field(default_factory=dict)


SOURCE_KINDS = ("public_dataset", "private_dataset", "crawled", "user_data", "synthetic", "other")


def load_compliance_config(path: str | Path | None) -> ComplianceConfig:
    """The defaults, with the fields of the YAML mapping at ``path`` (if any) applied."""
    if path is None:
        return ComplianceConfig()
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    known = {f.name for f in fields(ComplianceConfig)}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of compliance fields at the top level")
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
    for name, source in (values.get("sources") or {}).items():
        if not isinstance(source, dict) or source.get("kind", "crawled") not in SOURCE_KINDS:
            raise ValueError(f"{path}: sources.{name}.kind: expected one of {', '.join(SOURCE_KINDS)}")
    return ComplianceConfig(**values)


@dataclass
class Facts:
    model_ref: str
    manifest: Manifest
    record: dict
    config: ComplianceConfig
    chain: list[str]  # the model and every version it derives from
    sources: list[str]  # the dataset versions the curriculum drew from
    languages: list[tuple]  # (language, documents, estimated tokens in sources, tokens in token shards)
    stages: list[dict]  # per stage: name, sequences, tokens, sequences trained
    seq_len: int | None
    domains: list[tuple]  # (host, documents, characters, estimated tokens), largest first
    num_domains_listed: int
    snapshots: list[dict]  # per raw version: ref, snapshot, documents read, quarantined, first/last date
    exclusions: list[tuple]  # (step, reason, documents)
    pii: dict  # documents with redactions, spans, spans by category
    requests: list  # every erasure request in the ledger
    requests_applied: list[str]  # ids applied by a raw version of the chain
    robots: list[dict] = field(default_factory=list)  # the robots.json records of the chain

    @property
    def model_name(self) -> str:
        recipe = self.record["model"].get("recipe") or "model"
        return self.config.model_name or f"Apertus {recipe} {self.manifest.version_id[:12]}"

    def source_kind(self, snapshot: str | None) -> str:
        return (self.config.sources.get(snapshot) or {}).get("kind", "crawled")

    @property
    def total_tokens(self) -> int:
        return sum(s["tokens"] for s in self.stages)

    def excluded(self, reason: str) -> int:
        return sum(n for _, r, n in self.exclusions if r == reason)

    def tokens_processed(self) -> int | None:
        """Optimizer steps x global batch x seq_len, when the record holds all three."""
        steps = self.record.get("metrics", {}).get("steps")
        batch = (self.record.get("config", {}).get("deepspeed") or {}).get("train_batch_size")
        return steps * batch * self.seq_len if steps and batch and self.seq_len else None


IN_REFS = "list_contains(?, asset || '/' || dataset_version)"  # a row's version is one of a list of refs


# The template's rule for the list of most relevant domains (section 2.3), as we read it.
DOMAIN_SHARE, SME_DOMAIN_SHARE, SME_MAX_DOMAINS = 0.10, 0.05, 1000


def domains_to_list(num_domains: int, sme: bool) -> int:
    """How many of the largest domains the summary lists: the top 10% by content size (SMEs: the
    top 5%, at most 1,000), at least one when there is any."""
    if not num_domains:
        return 0
    count = math.ceil(num_domains * (SME_DOMAIN_SHARE if sme else DOMAIN_SHARE))
    return max(1, min(count, SME_MAX_DOMAINS) if sme else count)


def gather(layout: DataLayout, model_ref: str, config: ComplianceConfig = ComplianceConfig()) -> Facts:
    """The facts about model version ``model_ref`` (``trained_model/<id or unique prefix>``)."""
    versions = load_versions(layout)
    ref = resolve(versions, model_ref)
    manifest = versions[ref]
    if manifest.asset not in MODEL_ASSETS:
        raise ValueError(
            f"{model_ref!r}: {ref} is a {manifest.asset} version, not a model ({', '.join(MODEL_ASSETS)})"
        )
    record = load_record(layout.datasets / ref)
    if "datasets" not in record:
        raise ValueError(
            f"{ref}: its provenance record names no training data (a fine-tuned model?); "
            "generate the documents for the trained_model version it derives from"
        )
    chain = [r for r in ancestors(versions, ref) if r in versions]
    sources = sorted({v for s in record["datasets"]["stages"] for v in s.get("dataset_versions", [])})
    shards = layout.datasets / record["datasets"][TOKEN_SHARDS]
    index = read_index(shards)
    staged: dict[str, int] = {}
    for stage in index["stages"]:
        stage_index = read_index(shards / stage["path"])
        for language, n in stage_index.get("document_tokens_by_language", {}).items():
            staged[language] = staged.get(language, 0) + n
    # Per stage, the sequences trained on; without the model's per-sequence use, the same words as
    # `apertus audit contains --model` (provenance.audit.model_use), never a number or a blank.
    use_known = is_listed(manifest, SEQUENCE_USE_FILE)
    trained = {
        s["stage"]: s.get("sequences_trained") if use_known else USE_UNKNOWN_TEXT
        for s in record["datasets"]["stages"]
    }
    stages = [
        {"stage": s["stage"], "sequences": s["num_sequences"], "tokens": s["num_tokens"],
         "sequences_trained": trained.get(s["stage"])}
        for s in sorted(index["stages"], key=lambda s: s["stage_index"])
    ]  # fmt: skip
    raws = [r for r in chain if versions[r].asset == RAW_DOCUMENTS]
    refresh_catalog(layout)  # builds it, or adds what it lacks: O(versions) when current
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:
        by_language = con.execute(
            f"""SELECT coalesce(language, 'unknown'), count(*), sum(num_tokens_est) FROM document_index
                WHERE {IN_REFS} GROUP BY 1 ORDER BY 1""",
            [sources],
        ).fetchall()
        domains = con.execute(
            f"""SELECT coalesce(nullif(rtrim(lower(regexp_extract(url, ?, 1)), '.'), ''), '(no URL)') AS host,
                       count(*), sum(num_chars), sum(num_tokens_est)
                FROM document_index WHERE {IN_REFS} GROUP BY host ORDER BY 3 DESC, host""",
            [HOST_PATTERN, sources],
        ).fetchall()
        exclusions = con.execute(
            f"""SELECT step, reason, count(*) FROM exclusions WHERE {IN_REFS}
                GROUP BY ALL ORDER BY step, reason""",
            [chain],
        ).fetchall()
        quarantined = dict(
            con.execute(
                "SELECT dataset_version, count(*) FROM quarantine WHERE list_contains(?, dataset_version) GROUP BY 1",
                [[r.split("/")[1] for r in raws]],
            ).fetchall()
        )
        read = dict(
            con.execute(
                f"SELECT asset || '/' || dataset_version, count(*) FROM documents WHERE {IN_REFS} GROUP BY 1",
                [raws],
            ).fetchall()
        )
    finally:
        con.close()
    languages = [(lang, docs, tokens, staged.get(lang, 0)) for lang, docs, tokens in by_language]
    languages += [
        (lang, 0, 0, n) for lang, n in sorted(staged.items()) if lang not in {r[0] for r in by_language}
    ]
    snapshots = []
    for r in raws:
        first, last = _crawl_dates(layout.datasets / r)
        snapshots.append({
            "ref": r, "snapshot": versions[r].snapshot, "documents": read.get(r, 0),
            "quarantined": quarantined.get(r.split("/")[1], 0), "first": first, "last": last,
        })  # fmt: skip
    robots = [
        json.loads((layout.datasets / r / ROBOTS_RECORD).read_text())
        for r in raws
        if (layout.datasets / r / ROBOTS_RECORD).exists()
    ]
    recorded = load_index(layout)
    applied = sorted({q.request_id for r in raws for q in applied_requests(recorded, versions[r].config)[0]})
    return Facts(
        ref, manifest, record, config, chain, sources, languages, stages, index.get("seq_len"),
        domains, domains_to_list(len(domains), config.sme), snapshots, exclusions,
        _pii(layout, [r for r in chain if versions[r].asset == QUALITY_FILTERED]),
        list(recorded.requests), applied, robots,
    )  # fmt: skip


def _crawl_dates(folder: Path) -> tuple[str | None, str | None]:
    """The earliest and latest ``date`` the source records gave (kept in ``extra``), if any."""
    files = sorted((folder / SHARDS).glob("*.parquet"))
    if not files:
        return None, None
    con = duckdb.connect()
    try:
        return con.execute(
            """SELECT min(d), max(d) FROM (SELECT json_extract_string(extra, '$.date') AS d
               FROM read_parquet(?, union_by_name = true)) WHERE d IS NOT NULL""",
            [[str(f) for f in files]],
        ).fetchone()
    finally:
        con.close()


def _pii(layout: DataLayout, refs: list[str]) -> dict:
    """PII redacted by the chain's quality_filtered versions: documents touched, spans replaced (the
    pii_redactions column), and spans per category (placeholders counted in the kept text)."""
    files = [p for r in refs for p in sorted((layout.datasets / r / SHARDS).glob("*.parquet"))]
    result = {"documents": 0, "spans": 0, "by_category": {name: 0 for name in PII_PLACEHOLDERS}}
    if not files:
        return result
    placeholders = list(PII_PLACEHOLDERS.values())
    counts = ", ".join("sum((length(text) - length(replace(text, ?, ''))) // ?)" for _ in placeholders)
    con = duckdb.connect()
    try:
        row = con.execute(
            f"""SELECT count(*) FILTER (WHERE pii_redactions > 0), coalesce(sum(pii_redactions), 0), {counts}
                FROM read_parquet(?, union_by_name = true)""",
            [value for p in placeholders for value in (p, len(p))] + [[str(f) for f in files]],
        ).fetchone()
    finally:
        con.close()
    result["documents"], result["spans"] = int(row[0]), int(row[1])
    result["by_category"] = {name: int(n or 0) for name, n in zip(PII_PLACEHOLDERS, row[2:], strict=True)}
    return result
