#!/usr/bin/env bash
# GPU benchmark kit: W1-W5 with JAX on one NVIDIA GPU and the PyTorch peers of ../shared/bench on the same GPU,
# interleaved by bench/compare.py; prints one markdown table and one JSON line (stdout), everything else on stderr.
#
#   bench/gpu/run.sh                      # on the GPU machine: all workloads, one round, ~8 min budget
#   bench/gpu/run.sh --only w5,w2         # a subset (order = run order)
#   bench/gpu/run.sh --dry-run            # CPU, tiny sizes (METANAS_BENCH_TINY=1): checks the kit, not the speed
#   bench/gpu/run.sh --dry-run --only w1,w2,w3,w4,w5
#
# Needs: python with jax (CUDA build for a real run), flax, optax, chex, numpy, scipy; torch for the peers (optional:
# without torch the peers are skipped; the published peer figures are CPU ones, so the table never uses them).
# hydra-core, omegaconf and antlr4 (the metanas app's, not the benchmarks') are installed from bench/gpu/wheels/
# into the output folder when missing; on a machine with internet, fetch them there once with
#   python3 -m pip download --no-deps --only-binary=:all: -d bench/gpu/wheels hydra-core==1.3.2 omegaconf==2.3.0 \
#       PyYAML==6.0.2 --python-version 3.12 --platform manylinux2014_x86_64   # match the GPU machine's python
#   python3 -m pip wheel --no-deps -w bench/gpu/wheels antlr4-python3-runtime==4.9.3    # pure python, sdist only
# Environment: PYTHON (default python3), PEER_PYTHON (default: PYTHON if it imports torch), OUT (output folder).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
DRY=0
ONLY=""
BUDGET=450     # seconds for all scripts together (the kit's own start-up comes on top; < 8 min in all)
TIMEOUT=240    # one script at most
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --only) ONLY="$2"; shift ;;
    --only=*) ONLY="${1#--only=}" ;;
    --budget-s) BUDGET="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: error: unknown argument '$1'; expected --dry-run, --only W,..., --budget-s S" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-${TMPDIR:-/tmp}/metanas-gpu-bench-$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
say() { echo "run.sh: $*" >&2; }

if ! "$PY" -c "import jax" 2>/dev/null; then
  echo "run.sh: error: $PY cannot import jax; set PYTHON= to a python with jax (CUDA build for the GPU run)" >&2; exit 2
fi
if [ "$DRY" = 1 ]; then
  export JAX_PLATFORMS=cpu METANAS_BENCH_TINY=1
  ONLY="${ONLY:-w5}"
  BUDGET=600
else
  unset METANAS_BENCH_TINY
  ONLY="${ONLY:-w5,w2,w4,w3,w1}"
  if ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    echo "run.sh: error: JAX sees no GPU ($("$PY" -c 'import jax; print(jax.devices())' 2>&1 | tail -1)); install" \
         "jax with CUDA, or use --dry-run for the CPU check" >&2; exit 2
  fi
  export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and the torch peers share the GPU, one process at a time
fi

# the app's config stack, from wheel files when missing (the benchmarks themselves do not need it)
if ! "$PY" -c "import hydra, omegaconf, antlr4, yaml" 2>/dev/null; then
  if ! ls "$HERE"/wheels/*.whl >/dev/null 2>&1; then
    echo "run.sh: error: hydra-core/omegaconf/antlr4/PyYAML missing and no wheels in $HERE/wheels; download them" \
         "as the header of $0 says" >&2; exit 2
  fi
  say "installing $(ls "$HERE"/wheels/*.whl | xargs -n1 basename | tr '\n' ' ')into $OUT/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$OUT/site" "$HERE"/wheels/*.whl >&2
  export PYTHONPATH="$PYTHONPATH:$OUT/site"
fi
"$PY" -c "import metanas.app" 2>/dev/null || say "warning: metanas.app does not import (the benchmarks do not need it)"

# peers: torch on the same GPU through torch_on_cuda.py (on the CPU in a dry run)
PEER="${PEER_PYTHON:-$PY}"
PEER_ARGS=()
if "$PEER" -c "import torch" 2>/dev/null; then
  PEER_ARGS=(--peer-python "$(command -v "$PEER")")
  [ "$DRY" = 1 ] || PEER_ARGS+=(--peer-wrapper "$HERE/torch_on_cuda.py")
  TORCH="$("$PEER" -c 'import torch; print(torch.__version__)')"
else
  say "no torch in $PEER: peers skipped (no ratios: published peer figures are from another machine)"
  TORCH=none
fi

if [ "$DRY" = 1 ]; then
  SCRIPT_ARGS=(--args "w1=--steps 1 --warmup 1 --second-order-steps 0" --args "w2=1 --orders first_order"
               --args "w3=1" --args "w5=--candidates 20000 --chunk 2048 --k 10 --dense-candidates 2048"
               --args "peer:w2=1")
else
  SCRIPT_ARGS=(--args "w5=--candidates 1000000000 --chunk 1048576 --dense-candidates 10000000")
fi
read -r DEVICE JAXV < <("$PY" -c 'import jax; d = jax.devices()[0]
print(d.platform + ":" + getattr(d, "device_kind", "").replace(" ", "_"), jax.__version__)')
GPU="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)"
say "output in $OUT; device $DEVICE; workloads $ONLY; budget ${BUDGET}s"
cd "$REPO"
"$PY" bench/compare.py --only "$ONLY" --rounds 1 --timeout "$TIMEOUT" --budget-s "$BUDGET" --log "$OUT/raw.jsonl" \
  --no-published \
  "${PEER_ARGS[@]}" "${SCRIPT_ARGS[@]}" \
  --meta "kit=bench/gpu/run.sh" --meta "dry_run=$([ "$DRY" = 1 ] && echo true || echo false)" \
  --meta "device=$DEVICE" --meta "gpu=${GPU:-none}" --meta "torch=$TORCH" \
  --meta "jax=$JAXV" --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  >"$OUT/result.json" 2>"$OUT/compare.log" || { cat "$OUT/compare.log" >&2; exit 1; }
grep -v '^|' "$OUT/compare.log" >&2 || true
grep '^|' "$OUT/compare.log" | tee "$OUT/table.md"
tail -n 1 "$OUT/result.json"
