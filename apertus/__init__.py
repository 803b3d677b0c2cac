"""The ``apertus`` command line: ingest and curate snapshots, run the demo, audit the records."""
