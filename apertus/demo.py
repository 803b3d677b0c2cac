"""``make demo``: curate the bundled sample corpus through Dagster and print what happened."""

from __future__ import annotations

import time

from provenance.layout import DataLayout

SAMPLE_SNAPSHOT = "sample"


def ensure_sample_snapshot(layout: DataLayout) -> None:
    """Generate the bundled sample's crawl shards into the inbox, once (deterministic, seed 0)."""
    from pipelines.sample_crawl import generate_snapshot

    target = layout.snapshot_dir(SAMPLE_SNAPSHOT)
    if target.is_dir():
        print(f"sample snapshot: {target} (already there)")
        return
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    truth = generate_snapshot(target, seed=0)
    files = sorted(p for p in target.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(
        f"sample snapshot: generated {len(files)} shards ({size / 1e6:.1f} MB) into {target} "
        f"in {time.monotonic() - started:.1f}s; ground truth: {truth}"
    )


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


def run_demo(tasks: int = 4) -> int:
    """Generate the sample snapshot if needed, curate it through Dagster, print a summary."""
    from apertus.snapshots import curate, register
    from assets.curation import CURATION_ASSETS
    layout = DataLayout.from_env()
    print(f"data folder: {layout.root}")
    ensure_sample_snapshot(layout)
    register(SAMPLE_SNAPSHOT)
    started = time.monotonic()
    result = curate(SAMPLE_SNAPSHOT, tasks=tasks)
    print(f"\ncurated snapshot {SAMPLE_SNAPSHOT!r} through Dagster in {time.monotonic() - started:.0f}s")
    step_results = [_step_result(layout, result, asset.key.to_user_string()) for asset in CURATION_ASSETS]
    for step in step_results:
        _print_step(step)
    _print_languages(step_results[1], step_results[-1])

    from apertus.audit import print_lineage, print_verify

    final = step_results[-1].manifest.ref
    print(f"\n$ apertus audit lineage {final[:25]}")
    print_lineage(final, prov=None, as_json=False)
    print("\n$ apertus audit verify")
    verified = print_verify(None, as_json=False)
    print(
        f'\ncatalog: {layout.catalog}   (try: apertus audit sql "SELECT step, reason, count(*) FROM documents GROUP BY ALL")'
    )
    print("UI: make ui, then open http://127.0.0.1:3000")
    return verified


def _step_result(layout: DataLayout, dagster_result, asset: str):
    from pipelines.steps import StepResult
    from provenance.manifest import load_manifest, version_folder

    ref = dagster_result.output_for_node(asset)
    folder = version_folder(layout.datasets, ref)
    manifest = load_manifest(folder)
    created = any(
        m.metadata["new_version"].value for m in dagster_result.asset_materializations_for_node(asset)
    )
    return StepResult(manifest, created, manifest.stats["kept"], manifest.stats["excluded"], folder, None)
