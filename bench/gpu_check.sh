#!/usr/bin/env bash
# The GPU check, in at most 5 minutes on one NVIDIA GPU, in the priority order of issue 17:
#   1-3. bench/lasa.py --gpu --budget-s: LASA's Triton kernels in bf16 against the fp32 reference at the
#        priority shapes (T 1000 and 4096, GQA 4, D 128, blocks of 64, top-16; forward, every gradient, a
#        decode step), then fwd and fwd+bwd against SDPA flash at 16k and 64k (B * T fixed), then decode
#        at 32k (KV bytes and tokens/s against a dense cache), then FlexAttention at 16k and 64k, then
#        the wider correctness grid; what does not fit is skipped with a message  (LASA_BUDGET_S, 140 s)
#   4.   bench/gpu_train.py: the first-step loss against a CPU reference, then tokens/s, TFLOP/s, MFU and
#        peak memory of the gpu-moe-1b recipe and its dense baseline       (the rest, at least 30 s)
# A part that has no time left is skipped with a message. Run from anywhere: bash bench/gpu_check.sh.
# Air-gapped host: copy the repository with its wheelhouse/ (make wheelhouse, on a machine with network);
# the wheels are installed into wheelhouse/.site-<hash> with --no-index --no-deps, never torch or Triton:
# the host's own CUDA build of torch and its Triton are used. PYTHON selects the host's interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
TOTAL_S=${TOTAL_S:-290}
LASA_BUDGET_S=${LASA_BUDGET_S:-140}
PY=${PYTHON:-python3}
started=$SECONDS
failed=()

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench/gpu_check.sh: no NVIDIA GPU visible (nvidia-smi); nothing to check" >&2
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "bench/gpu_check.sh: $PY has no CUDA build of torch; set PYTHON to the host's interpreter" >&2
  exit 2
fi

if compgen -G "wheelhouse/*.whl" >/dev/null; then
  # wheelhouse.py needs packaging: the wheelhouse's own wheel, imported from the zip, if the host lacks it.
  packaging_whl=$(compgen -G "wheelhouse/packaging-*.whl" | head -n 1 || true)
  mapfile -t wheels < <(PYTHONPATH="${packaging_whl}" "$PY" bench/wheelhouse.py install-list)
  # Installed once per set of wheels (a rerun starts at once): wheelhouse/.site-<hash of the file names>.
  site="$PWD/wheelhouse/.site-$(printf '%s\n' "${wheels[@]}" | sha256sum | cut -c1-12)"
  if [[ ! -f "$site/.complete" ]]; then
    echo "installing ${#wheels[@]} wheels from wheelhouse/ into $site (--no-index --no-deps) ..."
    rm -rf "$site"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --target "$site" "${wheels[@]}" ||
      { echo "bench/gpu_check.sh: installing the wheelhouse failed" >&2; exit 2; }
    touch "$site/.complete"
  fi
  export PYTHONPATH="$site:$PWD"
else
  echo "no wheelhouse/ here: using the packages $PY already has (make wheelhouse builds one)"
  export PYTHONPATH="$PWD"
fi
unset TRITON_INTERPRET APERTUS_LASA_IMPL

echo "== host"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF'
import platform, torch
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = "not installed"
print(f"python {platform.python_version()}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"triton {triton_version}; device {torch.cuda.get_device_name()}")
EOF
date -u +"date %Y-%m-%dT%H:%M:%SZ"

left() { echo $((TOTAL_S - (SECONDS - started))); }

budget=$(($(left) - 5 < LASA_BUDGET_S ? $(left) - 5 : LASA_BUDGET_S))
echo "== 1-3. LASA: bf16 correctness, timing against SDPA flash and FlexAttention, decode memory (budget ${budget} s)"
if ((budget < 20)); then
  echo "LASA: skipped, ${budget} s left of the ${TOTAL_S} s"
else
  # --budget-s skips what would start too late; the timeout stops what started and overran.
  timeout --signal=INT --kill-after=10 "$budget" "$PY" bench/lasa.py --gpu --budget-s $((budget - 5)) \
    --lengths 16384 65536
  rc=$?
  if ((rc == 124 || rc == 130)); then
    echo "LASA: stopped at its budget of ${budget} s; the rows above are what fitted"
  elif ((rc != 0)); then
    failed+=("lasa (exit $rc)")
  fi
fi

train_s=$(($(left) - 15))
echo "== 4. MoE training: gpu-moe-1b and gpu-dense-1b with DeepSpeed (budget ${train_s} s)"
if ((train_s < 30)); then
  echo "MoE training: skipped, ${train_s} s left of the ${TOTAL_S} s"
elif ! "$PY" -c "import deepspeed" >/dev/null 2>&1; then
  echo "MoE training: skipped, deepspeed is not importable (bring the wheelhouse: make wheelhouse)"
  failed+=("train (no deepspeed)")
else
  timeout --signal=INT --kill-after=10 $((train_s + 10)) "$PY" bench/gpu_train.py --budget-s "$train_s"
  rc=$?
  ((rc == 0)) || failed+=("train (exit $rc)")
fi

echo "== done in $((SECONDS - started)) s"
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
