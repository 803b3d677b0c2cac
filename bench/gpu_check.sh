#!/usr/bin/env bash
# LASA on an NVIDIA GPU: bf16 correctness of the Triton kernels against the reference, then the benchmark
# table (fwd and fwd+bwd vs SDPA flash and FlexAttention at 4k/16k/64k, decode cache memory).
# Run from the repository root: bash bench/gpu_check.sh. Installs nothing; stops itself after 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench/gpu_check.sh: no NVIDIA GPU visible (nvidia-smi); nothing to check" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
unset TRITON_INTERPRET APERTUS_LASA_IMPL
exec timeout --signal=INT 290 "$PY" bench/lasa.py --gpu "$@"
