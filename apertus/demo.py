"""``make demo``: curate the bundled sample corpus through Dagster and print what happened."""

from __future__ import annotations

import os
import time
from pathlib import Path

from records.assets import CURRICULUM_STAGES, QUALITY_CLASSIFIER, TOKEN_SHARDS, TOKENIZER, TRAINED_MODEL
from records.curriculum import read_stage_stats
from records.layout import DataLayout
from records.models import EVALUATION, EXPORT_FILE, RECORD
from records.quality import read_metrics
from records.token_shards import read_index
from records.tokenizer import read_fertility

SAMPLE_SNAPSHOT = "sample"


def ensure_sample_snapshot(layout: DataLayout, num_documents: int | None = None) -> None:
    """Generate the bundled sample's crawl shards into the inbox, once (deterministic, seed 0);
    num_documents: a smaller crawl than the full sample (the air-gapped test uses one)."""
    from sample.crawl import generate_snapshot

    target = layout.snapshot_dir(SAMPLE_SNAPSHOT)
    if target.is_dir():
        print(f"sample snapshot: {target} (already there)")
        ensure_sample_robots(layout, target.parent / f"{SAMPLE_SNAPSHOT}.truth.parquet")
        return
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    truth = generate_snapshot(target, seed=0, num_documents=num_documents)
    files = sorted(p for p in target.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(
        f"sample snapshot: generated {len(files)} shards ({size / 1e6:.1f} MB) into {target} "
        f"in {time.monotonic() - started:.1f}s; ground truth: {truth}"
    )
    ensure_sample_robots(layout, truth)


def ensure_sample_robots(layout: DataLayout, truth) -> None:
    """Dated robots.txt files for the sample's hosts (some reserve pages from AI crawlers), once."""
    import pyarrow.parquet as pq

    from pipelines.robots import write_sample_robots
    from records.erasure_match import url_host

    if layout.robots.is_dir():
        return
    hosts = {url_host(u) for u in pq.read_table(truth, columns=["url"])["url"].to_pylist() if u}
    written = write_sample_robots(layout.robots, hosts - {None}, seed=0)
    print(f"sample robots.txt: {len(written)} dated files for {len(hosts)} hosts in {layout.robots}")


def ensure_instance_keys(layout: DataLayout) -> Path:
    """The key folder the demo signs with: ``APERTUS_KEYS``, or when unset ``<data folder>-keys`` beside
    the data folder (set in this process, so every step inherits it); `apertus init` runs when the
    folder has no key yet (``--adopt`` for a data folder older code left its key in)."""
    from records.identity import init_instance
    from records.keys import KEYS_ENV, LEGACY_KEY, PRIVATE_KEY, keys_folder

    folder = keys_folder(layout)
    if not os.environ.get(KEYS_ENV):
        os.environ[KEYS_ENV] = str(folder)
        print(f"key folder: {KEYS_ENV} is not set; the demo sets it to {folder} (outside the data folder)")
    else:
        print(f"key folder: {folder} ({KEYS_ENV})")
    if not (folder / PRIVATE_KEY).exists():
        adopt = (layout.ledger / LEGACY_KEY).exists()
        print(f"$ apertus init{' --adopt' if adopt else ''}   (no signing key in {folder} yet)")
        identity = init_instance(layout, adopt=adopt)
        print(f"   key id {identity.key_id[:16]}… in {folder}")
    return folder


def _print_head_and_verify(layout: DataLayout, folder: Path) -> int:
    """End of the demo: print the head, keep it in the key folder, verify against it and the pinned key."""
    from apertus.audit import print_head, print_verify
    from records.keys import PUBLIC_KEY, held_head_path
    from records.ledger import Ledger

    print("\n$ apertus audit head")
    print_head()
    held = held_head_path(folder, Ledger(layout.ledger).origin() or "")
    trusted = folder / PUBLIC_KEY
    print(
        f"\nthe head above is saved in {held}: keep a copy elsewhere (docs/security.md) and check against it"
    )
    print(f"\n$ apertus audit verify --trusted-key {trusted} --head {held}")
    return print_verify(None, as_json=False, trusted_key=str(trusted), head=str(held))


def _print_step(result) -> None:
    manifest = result.manifest
    verb = "new" if result.created else "reused"
    print(
        f"\n== {manifest.asset}  version {manifest.short_id} ({verb})  kept {result.kept['documents']:,}"
        f"  removed {result.excluded['documents']:,}"
    )
    for reason, count in sorted(result.excluded["by_reason"].items(), key=lambda x: -x[1]):
        print(f"   removed {count:6,}  {reason}")
    quarantine = manifest.stats.get("quarantine")
    if quarantine:
        print(f"   quarantined {quarantine['records']:,} records: {quarantine['by_reason']}")


def _print_languages(first, last) -> None:
    print("\nper language: documents identified -> documents kept at the end, estimated tokens kept")
    languages = sorted(set(first.kept["by_language"]) | set(last.kept["by_language"]))
    for lang in languages:
        before = first.kept["by_language"].get(lang, {}).get("documents", 0)
        after = last.kept["by_language"].get(lang, {})
        print(
            f"   {lang:8} {before:6,} -> {after.get('documents', 0):6,}   {after.get('tokens_est', 0):>10,} tokens"
        )


def _print_training_data(layout: DataLayout, curate_result, stage_result) -> None:
    """The learned quality score, the curriculum's stages and the token shards, in a few lines."""

    from records.manifest import version_folder

    def folder(result, asset):
        return version_folder(layout.datasets, result.output_for_node(asset))

    metrics = read_metrics(folder(curate_result, QUALITY_CLASSIFIER))
    print(
        f"\n== quality_classifier  held-out AUC {metrics['auc']:.3f}  precision {metrics['precision']:.3f}"
        f"  recall {metrics['recall']:.3f}"
    )
    stats = read_stage_stats(folder(stage_result, CURRICULUM_STAGES))
    print(f"== curriculum_stages  {len(stats['stages'])} stages, {stats['tokens']:,} estimated tokens")
    for entry in stats["stages"]:
        print(f"   {entry['name']:10} {entry['documents']:6,} documents  {entry['tokens']:>9,} tokens")
    fertility = read_fertility(folder(stage_result, TOKENIZER))["languages"]
    exact = sum(entry["round_trip_exact"] for entry in fertility.values())
    print(f"== tokenizer  round-trips {exact} of {len(fertility)} languages exactly")
    index = read_index(folder(stage_result, TOKEN_SHARDS))
    print(f"== token_shards  sequences of {index['seq_len']} tokens:")
    for entry in index["stages"]:
        print(
            f"   {entry['stage']:10} {entry['num_sequences']:6,} sequences  {entry['num_tokens']:>9,} tokens"
        )


def _print_trained_model(trained) -> None:
    """The trained model's loss, speed and held-out perplexity per language after each stage."""
    import json

    out = DataLayout.from_env().datasets / trained.output_for_node(TRAINED_MODEL)
    (event,) = trained.asset_materializations_for_node(TRAINED_MODEL)
    meta = event.metadata
    print(
        f"\n== trained_model  {meta['steps'].value} steps  loss {meta['first_loss'].value:.2f} -> "
        f"{meta['final_loss'].value:.2f}  {meta['tokens_per_s'].value:,.0f} tokens/s"
    )
    for entry in json.loads((out / EVALUATION).read_text())["after_stage"]:
        ppl = "  ".join(f"{lang} {p:,.0f}" for lang, p in entry["perplexity"].items())
        print(f"   after {entry['stage']:12} held-out perplexity: {ppl}")
    print(f"   {out}  {EXPORT_FILE} sha256 {meta['model_sha256'].value[:16]}")
    print(f"   provenance record: {out / RECORD}  ledger entry {meta['ledger_index'].value}")


def run_demo(tasks: int | None = None, documents: int | None = None, max_steps: int | None = None) -> int:
    """The whole product on the bundled sample, printing each step: generate the crawl snapshot (once),
    curate, stage and train through Dagster, audit the model (lineage, membership), fine-tune it,
    certify and roll back, record an erasure request and write the compliance documents, then verify
    every record. Returns 0 when verify passes and the fine-tuning act behaved."""
    from apertus.snapshots import curate, register, stage, train
    from assets.curation import CURATION_ASSETS

    layout = DataLayout.from_env()
    print(f"data folder: {layout.root}")
    keys = ensure_instance_keys(layout)
    ensure_sample_snapshot(layout, documents)
    register(SAMPLE_SNAPSHOT)
    started = time.monotonic()
    result = curate(SAMPLE_SNAPSHOT, tasks=tasks)
    print(f"\ncurated snapshot {SAMPLE_SNAPSHOT!r} through Dagster in {time.monotonic() - started:.0f}s")
    step_results = [_step_result(layout, result, asset.key.to_user_string()) for asset in CURATION_ASSETS]
    for step in step_results:
        _print_step(step)
    _print_languages(step_results[1], step_results[-1])
    staged = stage(tasks=tasks)
    _print_training_data(layout, result, staged)
    trained = train(max_steps=max_steps)
    _print_trained_model(trained)

    from apertus.audit import print_lineage, print_model_contains
    from provenance.audit.model_use import trained_document

    model = trained.output_for_node(TRAINED_MODEL)
    print(f"\n$ apertus audit lineage {model[:26]}")
    print_lineage(model, prov=None, as_json=False)
    _, url = trained_document(layout, model)
    print(f"\n$ apertus audit contains --url {url} --model {model[:26]}")
    print_model_contains(url=url, sha256=None, text=None, models=[model], as_json=False)

    from apertus.tune_cli import run_tune_demo

    tuned = run_tune_demo(layout, model)

    from apertus.compliance_cli import run_compliance_demo

    run_compliance_demo(layout, model)
    verified = _print_head_and_verify(layout, keys)
    print(
        f'\ncatalog: {layout.catalog}   (try: apertus audit sql "SELECT step, reason, count(*) FROM documents GROUP BY ALL")'
    )
    print("UI: make ui, then open http://127.0.0.1:3000")
    return verified or tuned


def _step_result(layout: DataLayout, dagster_result, asset: str):
    from pipelines.steps import StepResult
    from records.manifest import load_manifest, version_folder

    ref = dagster_result.output_for_node(asset)
    folder = version_folder(layout.datasets, ref)
    manifest = load_manifest(folder)
    created = any(
        m.metadata["new_version"].value for m in dagster_result.asset_materializations_for_node(asset)
    )
    return StepResult(manifest, created, manifest.stats["kept"], manifest.stats["excluded"], folder, None)
