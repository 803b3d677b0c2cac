"""Reading raw snapshots into documents, with quarantine for everything that cannot be read."""

from pipelines.readers.quarantine import QUARANTINE_SCHEMA, QuarantineWriter, read_quarantine
from pipelines.readers.snapshot import SnapshotReader

__all__ = ["QUARANTINE_SCHEMA", "QuarantineWriter", "SnapshotReader", "read_quarantine"]
