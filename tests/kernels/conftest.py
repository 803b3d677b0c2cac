"""Kernel tests run Triton in its interpreter on the CPU; this must be set before triton is imported."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
