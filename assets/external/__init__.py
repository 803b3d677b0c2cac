"""Dagster Pipes children: the processes the training assets start (``dg.PipesSubprocessClient``).

Each module here runs as ``python -m assets.external.<name>``: it opens the Pipes context, rebuilds the
typed run config from the Pipes extras, calls the training code (model/) and reports logs, the
materialization (metadata, the version id as data version) and the asset checks back through Pipes.
These modules import ``dagster_pipes`` only, never ``dagster`` (tests/test_import_direction.py), so the
child loads no orchestrator; model/ never imports either.
"""
