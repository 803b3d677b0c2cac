"""The Dagster UI in a real browser: a person launches curation of a snapshot and reads the result.

Starts ``dagster dev`` on 127.0.0.1 with a temporary instance and data folder, then drives
headless Chromium: the asset graph, "Materialize all" on the curation group for partition
``sample``, the run until it succeeds, and the ``deduplicated`` asset's metadata, which must show
the dataset version on disk and a per-language table whose counts match the version's shards.
Screenshots of each step go to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from records.layout import REPO_ROOT, DataLayout
from tests.e2e.browser import CHROMIUM_ARGS, INSTALL_HINT, Screenshots, find_chromium
from tests.e2e.dagster_server import DagsterDev, new_dagster_home

pytestmark = pytest.mark.e2e

ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
LOCATION = "assets.definitions"  # workspace.yaml's python_module
SNAPSHOT = "sample"
CURATION_ASSETS = ("raw_documents", "language_identified", "quality_filtered", "deduplicated")
RUN_TIMEOUT_S = 360  # about 80 s on 2 busy cores; generous for a loaded CI machine
UI_TIMEOUT_MS = 60_000
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
REQUIRED_ENV = "APERTUS_E2E_REQUIRED"


@pytest.fixture
def chromium() -> str:
    """The system's Chromium binary. Without it or Playwright the test is skipped, saying how to
    install them; under ``make test-e2e`` (``APERTUS_E2E_REQUIRED=1``) it fails instead, so CI
    cannot pass by skipping."""
    missing = None
    chromium = find_chromium()
    if chromium is None:
        missing = "Chromium is missing"
    elif importlib.util.find_spec("playwright") is None:
        missing = "the Python package playwright is missing"
    if missing:
        message = f"{missing}; {INSTALL_HINT}"
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRED_ENV}=1)")
        pytest.skip(message)
    return chromium


@pytest.fixture
def dagster_dev(chromium, tmp_path, monkeypatch):
    """``dagster dev`` over a fresh instance whose ``snapshots`` partitions hold ``sample``, a
    300-document snapshot generated and ingested into a fresh data folder."""
    from apertus.snapshots import ingest
    from sample.crawl import generate_snapshot

    data, home = tmp_path / "data", new_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("APERTUS_DATA", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    generate_snapshot(tmp_path / "crawl" / SNAPSHOT, seed=0, num_documents=300)
    # Registered before the daemon starts, so the inbox sensor sees a known partition and
    # leaves the launch to the browser.
    ingest(tmp_path / "crawl" / SNAPSHOT, SNAPSHOT)
    server = DagsterDev(dagster_home=home, data_folder=data, log_path=ARTIFACTS / "dagster-dev.log")
    try:
        server.wait_ready()
        yield server, DataLayout(data)
    finally:
        server.stop()


def _wait_for_run(server: DagsterDev, shots: Screenshots) -> dict:
    """The run of partition ``sample``, once it has finished; fail with its errors if it did not succeed."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    run = None
    while time.monotonic() < deadline:
        runs = [r for r in server.runs() if {"key": "dagster/partition", "value": SNAPSHOT} in r["tags"]]
        if runs:
            run = runs[0]
            if run["status"] in TERMINAL:
                break
        time.sleep(3)
    assert run is not None, f"no run for partition {SNAPSHOT!r} was launched {shots.context()}"
    shots.page.goto(f"{server.url}/runs/{run['runId']}")
    shots.page.get_by_text(run["runId"][:8], exact=True).first.wait_for()
    shots.take("run")
    assert run["status"] == "SUCCESS", (
        f"run {run['runId']} is {run['status']} after {RUN_TIMEOUT_S} s {shots.context()}\n"
        f"{server.run_failure(run['runId'])}\nserver log: {server.log_path}"
    )
    shots.page.get_by_text("Success", exact=True).first.wait_for()  # what the person sees, too
    return run


def _launch_from_group_page(page, server: DagsterDev, shots: Screenshots) -> None:
    page.goto(f"{server.url}/locations/{LOCATION}/asset-groups/curation")
    for asset in CURATION_ASSETS:
        page.get_by_text(asset, exact=True).first.wait_for()
    shots.take("curation-group")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize 4 assets").wait_for()
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem").filter(has=page.get_by_text(SNAPSHOT, exact=True)).first.click()
    page.keyboard.press("Escape")  # closes the partition menu, not the dialog
    dialog.get_by_text("1 partition", exact=True).wait_for()
    shots.take("partition-selected")
    dialog.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text(re.compile(r"Launched run")).first.wait_for()
    shots.take("launched")


def _language_table(page) -> dict[str, int]:
    """The per-language table of the metadata panel: language -> documents kept."""
    # The metadata panel is itself a table: the innermost one holding the header is ours.
    innermost = page.locator("table:not(:has(table))")
    table = innermost.filter(has=page.locator("th", has_text="tokens (est.)")).first
    table.scroll_into_view_if_needed()
    rows = table.evaluate(
        "t => [...t.querySelectorAll(':scope > tbody > tr')].map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return {cells[0]: int(cells[1].replace(",", "")) for cells in rows}


def _kept_per_language(version: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for shard in sorted((version / "shards").glob("*.parquet")):
        counts.update(pq.read_table(shard, columns=["language"]).column(0).to_pylist())
    return dict(counts)


def test_launch_curation_from_the_ui_and_read_its_metadata(chromium, dagster_dev):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    server, layout = dagster_dev
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        shots = Screenshots(page, ARTIFACTS)
        try:
            page.goto(f"{server.url}/asset-groups")
            page.get_by_text("curation", exact=True).first.wait_for()
            shots.take("asset-graph")

            _launch_from_group_page(page, server, shots)
            _wait_for_run(server, shots)

            page.goto(f"{server.url}/assets/deduplicated?view=partitions&partition={SNAPSHOT}")
            page.get_by_text("dataset_version", exact=True).first.wait_for()
            languages_ui = _language_table(page)
            shots.take("deduplicated-metadata")
            body = page.inner_text("body")
        except (PlaywrightError, AssertionError, ValueError) as error:
            with contextlib.suppress(PlaywrightError):  # a dead browser still gets its error reported
                shots.take("failure")
            raise AssertionError(f"{error}\n{shots.context()}\nserver log: {server.log_path}") from error
        finally:
            browser.close()

    versions = [p for p in (layout.datasets / "deduplicated").iterdir() if p.is_dir()]
    assert len(versions) == 1, f"expected one deduplicated version on disk, found {versions}"
    assert versions[0].name in body, f"dataset version {versions[0].name} not shown {shots.context()}"
    assert languages_ui == _kept_per_language(versions[0]), shots.context()
    assert len(languages_ui) >= 10, f"the sample has 21 languages, the table shows {sorted(languages_ui)}"
