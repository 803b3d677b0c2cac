"""Sensors: what starts work without a person at a terminal."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets.curation import snapshots
from assets.jobs import curate_job, erasure_job
from records.hashing import sha256_bytes, sha256_file
from records.layout import DataLayout, validate_snapshot_name
from records.requests import ERASURE_INBOX
from records.retrain_state import read_state


@dg.sensor(
    job=curate_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers every new folder in the data folder's inbox, and every new snapshot in the remote "
        "inbox APERTUS_INBOX_URL when one is set (read in place by the ingest step, never copied), as a "
        "snapshot partition and curates it. Snapshots whose name (or, remotely, an object key) is not "
        "valid are skipped with the reason logged; registered partitions with such names (left by "
        "older versions) are deleted."
    ),
)
def new_snapshots(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Cost grows with the number of inbox folders and registered partitions (one listing each), and
    with the number of objects of each new remote snapshot (one listing, to check its keys)."""
    from pipelines.remote_inbox import check_remote_snapshot, inbox_url, remote_snapshots

    layout = DataLayout.from_env()
    known = set(context.instance.get_dynamic_partitions(snapshots.name))
    refused = []
    remote = []
    url = inbox_url()
    if url:
        for name in remote_snapshots(url):
            try:
                if name not in known and not layout.snapshot_dir(name).exists():
                    count = check_remote_snapshot(url, name)
                    context.log.info(f"snapshot {name}: {count} objects at {url}, read there")
                    remote.append(name)
            except ValueError as error:  # a bad name or key: this snapshot waits, the others go on
                refused.append(f"{url}/{name}: {error}")
    new = list(remote)
    for name in layout.snapshots():
        try:
            validate_snapshot_name(name)
        except ValueError as error:
            refused.append(f"{layout.inbox / name}: {error}")
            continue
        if name not in known:
            new.append(name)
    invalid_known = []
    for name in sorted(known):
        try:
            validate_snapshot_name(name)
        except ValueError as error:
            invalid_known.append(name)
            refused.append(f"registered partition {name!r} deleted: {error}")
    for reason in refused:
        context.log.warning(f"snapshot skipped: {reason}")
    cleanup = [snapshots.build_delete_request(invalid_known)] if invalid_known else []
    if not new:
        skip = f"no new snapshot folders in {layout.inbox}" + (f" nor at {url}" if url else "")
        skip += "".join(f"; skipped {reason}" for reason in refused)
        return dg.SensorResult(skip_reason=skip, dynamic_partitions_requests=cleanup or None)
    new = sorted(set(new))
    context.log.info(f"new snapshots: {', '.join(new)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=name, run_key=f"snapshot:{name}") for name in new],
        dynamic_partitions_requests=[snapshots.build_add_request(new), *cleanup],
    )


REJECTED = "rejected"  # beside the request files: malformed ones, each with <name>.reason.txt
REQUEST_FIELDS = ("kind", "value", "note", "requested_at")


def erasure_request_folder(layout: DataLayout) -> Path:
    """Where erasure request files are dropped: ``<data>/requests/erasure/``."""
    return layout.root.joinpath(*ERASURE_INBOX)


def read_request_file(path: Path) -> dict:
    """The request a file holds: a JSON object with ``kind`` and ``value`` (as for ``apertus compliance
    request``), optionally ``note`` and ``requested_at``; ValueError naming the file and field otherwise."""
    try:
        body = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON erasure request ({exc})") from exc
    if not isinstance(body, dict) or not {"kind", "value"} <= body.keys():
        raise ValueError(f'{path}: an erasure request is a JSON object with "kind" and "value"')
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise ValueError(
            f"{path}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REQUEST_FIELDS)}"
        )
    if not all(isinstance(body.get(k), str) for k in ("kind", "value")) or not all(
        body.get(k) is None or isinstance(body[k], str) for k in ("note", "requested_at")
    ):
        raise ValueError(f"{path}: kind, value, note and requested_at must be strings")
    return body


def _record(layout: DataLayout, path: Path, body: dict):
    """Record the request in the ledger unless it is there already (a re-read file, a reset cursor,
    another writer at the same moment: ``record_request`` checks and appends under its lock); return
    the request. Without ``requested_at`` the file's modification time stands in, so the same
    file always yields the same request."""
    from records.requests import record_request

    requested_at = body.get("requested_at") or datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(
        timespec="seconds"
    ).replace("+00:00", "Z")
    try:
        request = record_request(
            layout, body["kind"], body["value"], body.get("note"), requested_at=requested_at
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return request


def _recurate(context, layout: DataLayout, before, recorded: list, files: dict) -> list[dg.RunRequest]:
    """One run per curated snapshot whose current raw_documents version keeps a document a newly
    recorded request names (provenance.erasure_recurate); every other snapshot that was clear of the
    requests before is noted as checked clear of these too (records.retrain_state.record_checked),
    so the retraining tick does not re-curate it for them. A snapshot with a re-curation pending
    from earlier requests, or never curated, is the tick's. Cost: one catalog scan of the current raw
    versions' kept rows for the new requests, plus their text when a request is a pattern."""
    from provenance.erasure_recurate import snapshots_to_recurate
    from records.assets import RAW_DOCUMENTS
    from records.retrain_state import read_state, record_checked

    versions = {
        name: state.assets[RAW_DOCUMENTS][0].partition("/")[2]
        for name, state in before.snapshots.items()
        if RAW_DOCUMENTS in state.assets
    }
    found = snapshots_to_recurate(layout, recorded, versions) if versions else {}
    now = read_state(layout, ()).num_requests
    clear = {
        name: (before.snapshots[name].assets[RAW_DOCUMENTS][0], now)
        for name in versions
        if name not in found and before.snapshots[name].applied_requests >= before.num_requests
    }
    record_checked(layout, clear)
    runs = []
    for name, request_ids in found.items():
        digests = [files[r][1] for r in request_ids if r in files]
        key = digests[0] if len(digests) == 1 else sha256_bytes("\n".join(sorted(digests)).encode())
        context.log.info(
            f"erasure request(s) {', '.join(r[:12] for r in request_ids)}: snapshot {name} keeps a match, re-curating"
        )
        runs.append(
            dg.RunRequest(
                partition_key=name,
                run_key=f"erasure:{key}:{name}",
                tags={
                    "apertus/erasure_request": key,
                    "apertus/erasure_request_id": ",".join(request_ids),
                    "apertus/erasure_request_file": ",".join(
                        str(files[r][0]) for r in request_ids if r in files
                    ),
                },
            )
        )
    context.log.info(
        f"erasure: {len(found)} snapshot(s) re-curated, {len(clear)} checked clear of "
        f"{len(recorded)} new request(s)"
    )
    return runs


def reject_request_file(path: Path, reason: str) -> Path:
    """Move a malformed request file into ``rejected/`` beside it, with ``<name>.reason.txt`` saying
    why (a name already taken there gets a numbered suffix); return its new path."""
    folder = path.parent / REJECTED
    folder.mkdir(exist_ok=True)
    target, n = folder / path.name, 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        target, n = folder / f"{path.stem}.{n}{path.suffix}", n + 1
    path.replace(target)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


@dg.sensor(
    job=erasure_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Records every new erasure request file in <data>/requests/erasure/ in the ledger and "
        "re-curates, once per file content, the curated snapshots whose raw documents keep a "
        "document it names (the others are noted as checked clear); a malformed file is moved to "
        "requests/erasure/rejected/ with its reason."
    ),
)
def erasure_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Cost per tick: one hash per request file in the folder; for new files, one ledger append
    each and one catalog scan of the current raw versions for all of them (``_recurate``)."""
    layout = DataLayout.from_env()
    folder = erasure_request_folder(layout)
    processed = set(json.loads(context.cursor)) if context.cursor else set()
    files = (
        sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith("."))
        if folder.is_dir()
        else []
    )
    new = [(path, sha256_file(path)) for path in files]
    new = [(path, digest) for path, digest in new if digest not in processed]
    if not new:
        return dg.SensorResult(skip_reason=f"no new erasure request files in {folder}")
    names = context.instance.get_dynamic_partitions(snapshots.name)
    before = read_state(layout, names)  # what each snapshot's raw version applied or was cleared of
    recorded, rejected, sources = [], [], {}
    for path, digest in new:
        if digest in processed:  # two files with the same content in one tick: one request
            continue
        try:
            request = _record(layout, path, read_request_file(path))
        except ValueError as exc:
            # One bad file must not stop the valid ones: it leaves the folder, with its reason.
            moved = reject_request_file(path, str(exc))
            context.log.warning(f"rejected erasure request file {path}: {exc} (moved to {moved})")
            rejected.append(path.name)
            continue
        recorded.append(request)
        sources[request.request_id] = (path, digest)
        processed.add(digest)
    requests = _recurate(context, layout, before, recorded, sources) if recorded else []
    skip = (
        f"recorded {len(recorded)} request(s); no curated snapshot keeps a document they name"
        if recorded
        else "no valid request"
    )
    if rejected:
        skip += f"; rejected {', '.join(rejected)} (see {folder / REJECTED})"
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(sorted(processed)),
        skip_reason=None if requests else skip,
    )
