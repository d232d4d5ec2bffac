#!/usr/bin/env bash
# One-shot GPU check of both tracks' speed, for a lent H100/H200 reached through one command.
#
# Why one script: the GPU is lent once, for minutes, through a tool that runs one shell command
# with a hard limit. Each step below has its own `timeout`, so a slow step loses only itself; the
# limits add up to 470 s. The expected total is 3 to 5 minutes.
#
#   steps  1 machine: nvidia-smi, torch, CUDA, cuDNN, Triton                        (~10 s)
#          2 image track: ResNet18 images/s, fp32 vs bf16 autocast + channels_last,
#            at 224 px (ImageNet stem) and 32 px (CIFAR stem), batch 256              (~40 s)
#          3 language track: bench_language.py --set device=cuda at S=64, then S=256 runs
#            batched, compiled (first compiles ~20-40 s each, cold cache)           (~2-3 min)
#          4 the paper study's cost: `games.referential --preset paper --strategy pbf
#            --seeds 0-63` for 3,000 and 6,000 iterations (1 and 2 generations), after a
#            2-iteration warm-up that fills the compile cache; the difference is one steady
#            generation, extrapolated to 300,000 iterations x 64 seeds                (~1-2 min)
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine (from anywhere in the checkout)
#   bash benchmarks/gpu_check.sh --smoke    # tiny sizes on the CPU, eager (or GPU_CHECK_SMOKE=1):
#                                           # tests the script here in about a minute
#
# Everything printed also goes to $OUT/gpu_check.log ($OUT: the device tool's result folder),
# else ./gpu_check.log; the slice runs' own output (a line per seed and generation) to
# $OUT/slice_*.txt. Exit status 0 when every step ended well, else 1 (the summary says which).
# From the environment: PYTHON (python3), DEVICE (cuda), SLICE_SEEDS (0-63), IMAGE_BATCH (256).
set -euo pipefail

SMOKE="${GPU_CHECK_SMOKE:-0}"
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; fi
PYTHON="${PYTHON:-python3}"                     # the GPU image's python3 holds torch
LOG="${OUT:-.}/gpu_check.log"
LOG="$(cd "$(dirname "$LOG")" && pwd)/$(basename "$LOG")"
cd "$(dirname "${BASH_SOURCE[0]}")/.."          # the repository root: `python -m games...` needs it
export PYTHONUNBUFFERED=1                       # output reaches the log as it happens

# ---- knobs: the GPU run, then the smoke run's tiny sizes -----------------------------------------
if [ "$SMOKE" = 1 ]; then
  DEVICE="${DEVICE:-cpu}"
  IMAGE_ARGS=(--device "$DEVICE" --batch-size 2 --seconds 0.3 --warmup 1)
  IMAGE_BIG=64 IMAGE_SMALL=32                   # 64 px takes the ImageNet stem, 32 px the CIFAR stem
  LANG_ARGS=(--seconds 0.2 --rounds 1 --no-compile)
  LANG_S1=2 LANG_S2=3
  SLICE_SEEDS="${SLICE_SEEDS:-0-1}"
  SLICE_PER_GEN=20 SLICE_SHORT=20 SLICE_LONG=40
  SLICE_ARGS=(--no-compile --eval-every 10)
else
  DEVICE="${DEVICE:-cuda}"
  IMAGE_ARGS=(--device "$DEVICE" --batch-size "${IMAGE_BATCH:-256}" --seconds 3 --warmup 10)
  IMAGE_BIG=224 IMAGE_SMALL=32
  LANG_ARGS=(--seconds 1 --rounds 2)            # compiled (the default) and eager single run
  LANG_S1=64 LANG_S2=256
  SLICE_SEEDS="${SLICE_SEEDS:-0-63}"
  SLICE_PER_GEN=3000 SLICE_SHORT=3000 SLICE_LONG=6000  # 1 vs 2 generations: differ by one whole generation
  SLICE_ARGS=()                                 # preset paper as the study: eval every 1000, compile auto
fi
STUDY_ITERATIONS=300000                         # games/presets/sweeps/paper_language.yaml, per run
SLICE_DIR="$(mktemp -d)"
trap 'rm -rf "$SLICE_DIR"' EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

SUMMARY=()
STEP_RC=0 STEP_SECONDS=0 FAILURES=0
# step NAME LIMIT_SECONDS COMMAND...: run COMMAND under its own timeout and report how it ended;
# never stops the script. With STEP_OUTPUT=FILE the command's output goes to FILE and its last
# lines are shown (for commands that print a line per seed).
step() {
  local name="$1" limit="$2" start
  shift 2
  echo
  echo "=== $name (limit ${limit} s) ==="
  echo "\$ ${*%%$'\n'*}"                         # the command's first line
  STEP_RC=0
  start="$(now)"
  if [ -n "${STEP_OUTPUT:-}" ]; then
    timeout --kill-after=10 "$limit" "$@" >"$STEP_OUTPUT" 2>&1 || STEP_RC=$?
    echo "... (last lines; all of it in $(basename "$STEP_OUTPUT"))"
    tail -n 3 "$STEP_OUTPUT"
  else
    timeout --kill-after=10 "$limit" "$@" || STEP_RC=$?
  fi
  STEP_SECONDS="$(since "$start")"
  local how="ok"
  if [ "$STEP_RC" -eq 124 ] || [ "$STEP_RC" -eq 137 ]; then how="TIMED OUT"
  elif [ "$STEP_RC" -ne 0 ]; then how="FAILED (exit $STEP_RC)"; fi
  if [ "$STEP_RC" -ne 0 ]; then FAILURES=$((FAILURES + 1)); fi
  echo "--- $name: $how, ${STEP_SECONDS} s"
  SUMMARY+=("$(printf '%-34s %-18s %7s s' "$name" "$how" "$STEP_SECONDS")")
}

# slice NAME LIMIT ITERATIONS PER_GENERATION: the paper study's runs (pbf), SLICE_SEEDS batched
slice() {
  local output="$SLICE_DIR/$1.txt"
  STEP_OUTPUT="$output" step "slice $1: $3 iterations" "$2" \
    "$PYTHON" -m games.referential --preset paper --strategy pbf --device "$DEVICE" --seeds "$SLICE_SEEDS" \
    --iterations "$3" --iterations-per-generation "$4" "${SLICE_ARGS[@]}" \
    --out "$SLICE_DIR/$1" --no-plot --no-progress
  if [ -n "${OUT:-}" ]; then cp "$output" "$OUT/slice_$1.txt"; fi
}

main() {
  echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), smoke=$SMOKE, device=$DEVICE, log $LOG"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'unknown (no .git)')"

  # ---- 1. the machine -----------------------------------------------------------------------------
  if command -v nvidia-smi >/dev/null; then
    step "nvidia-smi" 10 nvidia-smi
  else
    echo "nvidia-smi: not on this machine"
  fi
  step "torch and CUDA versions" 20 "$PYTHON" -c '
import platform, torch
print(f"Python {platform.python_version()}, torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, CUDA available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
try:
    import triton
    print(f"triton {triton.__version__}")
except ImportError:
    print("triton: not installed (torch.compile on CUDA needs it)")
'

  # ---- 2. image track ------------------------------------------------------------------------------
  step "image ${IMAGE_BIG} px, ResNet18" 40 \
    "$PYTHON" benchmarks/bench_image.py "${IMAGE_ARGS[@]}" --image-size "$IMAGE_BIG" --num-classes 1000
  step "image ${IMAGE_SMALL} px, ResNet18 (CIFAR stem)" 30 \
    "$PYTHON" benchmarks/bench_image.py "${IMAGE_ARGS[@]}" --image-size "$IMAGE_SMALL" --num-classes 10

  # ---- 3. language track, batched runs ---------------------------------------------------------------
  echo
  echo "note: bench_language times each step to its end (torch.cuda.synchronize) and measures its"
  echo "matmul peaks on the step's device, so its %peak columns are the GPU's."
  step "language S=$LANG_S1" 130 \
    "$PYTHON" benchmarks/bench_language.py --set "device=$DEVICE" --runs "$LANG_S1" "${LANG_ARGS[@]}"
  step "language S=$LANG_S2" 80 \
    "$PYTHON" benchmarks/bench_language.py --set "device=$DEVICE" --runs "$LANG_S2" "${LANG_ARGS[@]}"

  # ---- 4. the paper study's cost -----------------------------------------------------------------------
  slice warmup 45 2 2                             # fills inductor's cache for this shape
  slice short 45 "$SLICE_SHORT" "$SLICE_PER_GEN"
  local short_rc="$STEP_RC" short_s="$STEP_SECONDS"
  slice long 70 "$SLICE_LONG" "$SLICE_PER_GEN"
  local long_rc="$STEP_RC" long_s="$STEP_SECONDS"
  local seeds
  seeds="$("$PYTHON" -c "from emergent_frl.batched.runs import parse_seeds; print(len(parse_seeds('$SLICE_SEEDS')))" \
           2>/dev/null || echo "?")"
  echo
  echo "=== extrapolation to the paper study: $STUDY_ITERATIONS iterations x $seeds seeds in one process ==="
  if [ "$short_rc" -eq 0 ] && [ "$long_rc" -eq 0 ]; then
    # short = start-up + compile + ns iterations; long - short = (nl - ns) steady iterations
    awk -v s="$short_s" -v l="$long_s" -v ns="$SLICE_SHORT" -v nl="$SLICE_LONG" -v n="$STUDY_ITERATIONS" \
        -v seeds="$seeds" 'BEGIN {
      per = (l - s) / (nl - ns)
      printf "wall: %d iterations %.1f s, %d iterations %.1f s (process start and compile included)\n", ns, s, nl, l
      printf "steady: %.2f ms per iteration of all %s seeds", 1e3 * per, seeds
      if (per > 0 && seeds + 0 > 0) printf " = %.0f run-iterations/s", seeds / per
      printf " (training, evaluations, forgetting, checkpoints)\n"
      printf "extrapolated: %.1f s + %d x %.2f ms = %.1f min\n", s, n - ns, 1e3 * per, (s + (n - ns) * per) / 60
      printf "naive: long slice x %.0f = %.1f min (counts start-up and compile %.0f times)\n", n / nl, l * n / nl / 60, n / nl
    }'
  elif [ "$short_rc" -eq 0 ]; then
    awk -v s="$short_s" -v ns="$SLICE_SHORT" -v n="$STUDY_ITERATIONS" 'BEGIN {
      printf "only the short slice finished; naive: %.1f s x %d = %.1f min", s, n / ns, s * n / ns / 60
      printf " (counts start-up and compile %d times: too high)\n", n / ns }'
  else
    echo "no slice finished; see the slice steps above"
  fi

  echo
  echo "=== summary (limits add up to 470 s) ==="
  printf '%s\n' "${SUMMARY[@]}"
  echo "steps failed or timed out: $FAILURES"
  [ "$FAILURES" -eq 0 ]                           # the exit status: 0 when every step ended well
}

main 2>&1 | tee "$LOG"
