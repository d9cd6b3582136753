#!/usr/bin/env bash
# The CUDA check for a session whose task is lent a GPU machine (one H200, python3.12 with torch
# and torchvision, no internet). There, from the repository root, with .whl carried (fill it
# here with tools/device/wheels.sh):
#   bash tools/device/check.sh
# Rehearsal here, on the CPU with CPU-sized budgets (the same steps, so only CUDA is untried):
#   TORCHGATE_DEVICE=cpu bash tools/device/check.sh --rehearse
#
# Steps, in order, each in its own session under a time limit that ends its whole process tree
# (tools/device/step.py), within one overall budget:
#   import   everything the later steps import (fails in seconds, lists what is missing)
#   load     all six models on the device, one at a time: status, load seconds, memory each;
#            then padding vs warming every batch size on resnet101 (models.json)
#   fp32     resnet101 served at concurrency 64, batches up to 64, against raw (resnet101-fp32.json)
#   fp16     the same with TORCHGATE_HALF=true (resnet101-fp16.json)
#   startup  cold start and memory with all six models (startup.json)
#            (each bench step also leaves its results record in $OUT/results, as bench/results)
#   tests    the CUDA tests and the device-path tests (JUnit report summarised)
#   aot      resnet101 fp32 again with TORCHGATE_GRAPH=aot: its AOTInductor package compiled
#            for the device after readiness, measured once swapped in (resnet101-aot.json;
#            last, as the most optional: it needs a C++ compiler there)
# The ImageNet models get random state dicts saved under the official file names (there is no
# internet there) and run with TORCHGATE_VERIFY_WEIGHTS=false: speed and memory do not depend
# on the values. Everything printed is also in $OUT/check.log; the table is $OUT/summary.md;
# the servers' logs are $OUT/server-logs.txt. About 7 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
REHEARSE=false
if [[ "${1:-}" == "--rehearse" ]]; then REHEARSE=true; fi
OUT=${OUT:-/tmp/torchgate-check}
mkdir -p "$OUT"
rm -f "$OUT/check.log"

main() {
  local work device py
  work=$(mktemp -d /tmp/torchgate-check.XXXXXX)
  device=${TORCHGATE_DEVICE:-cuda}
  py=${PYTHON:-python3}
  export PYTHONUNBUFFERED=1
  if $REHEARSE; then
    echo "CPU rehearsal on $device: the same steps with CPU-sized budgets (not a GPU result)"
    budget=${CHECK_BUDGET_S:-900}; concurrency=8; batch=8; duration=5; warmup=1; raw=4
    shapes=8; requests=2000; title="CPU rehearsal of the device check"
    export PYTHONPATH=$PWD:$PWD/bench  # the service and its bench (bench/torchgate_bench)
  else
    budget=${CHECK_BUDGET_S:-540}; concurrency=64; batch=64; duration=15; warmup=3; raw=25
    shapes=40; requests=10000; title="Device check"
    timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
      --format=csv || echo "nvidia-smi: not available"
    timeout -k 5 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$work/site" .whl/*.whl || { echo "installing .whl failed"; return 1; }
    export PYTHONPATH=$work/site:$PWD:$PWD/bench
  fi
  local deadline=$(( $(date +%s) + budget ))
  local record=$work/steps.jsonl
  step() {  # step NAME LIMIT_S [--stdout FILE] -- COMMAND...
    local name=$1 limit=$2
    shift 2
    local left=$(( deadline - $(date +%s) - 20 ))
    if (( left < 20 )); then
      echo "=== $name: skipped, the check's ${budget} s budget is spent"
      echo "{\"step\": \"$name\", \"status\": -1, \"seconds\": 0}" >> "$record"
      return 1
    fi
    (( limit > left )) && limit=$left
    "$py" tools/device/step.py "$name" "$limit" --record "$record" "$@"
  }
  local bench=(-m torchgate_bench bench --model resnet101 --concurrency "$concurrency"
    --duration "$duration" --warmup "$warmup" --raw-budget "$raw" --ready-timeout 120
    --weights-dir "$work/weights" --log-dir "$work/logs" --json --results-dir "$OUT/results"
    --env "TORCHGATE_DEVICE=$device" --env TORCHGATE_VERIFY_WEIGHTS=false
    --env TORCHGATE_ACCESS_LOG=false --env "TORCHGATE_MAX_BATCH_SIZE=resnet101=$batch")
  mkdir -p "$work/logs"
  local site=()
  $REHEARSE || site=(--site "$work/site")
  if step import 90 -- "$py" tools/device/imports.py --device "$device" \
      ${site[@]+"${site[@]}"}; then
    step load 180 -- "$py" tools/device/load_models.py --device "$device" \
      --weights-dir "$work/weights" --max-batch-size "resnet101=$batch" \
      --shapes-budget "$shapes" --out "$OUT/models.json"
    step fp32 170 --stdout "$OUT/resnet101-fp32.json" -- "$py" "${bench[@]}" \
      --env TORCHGATE_HALF=false
    step fp16 170 --stdout "$OUT/resnet101-fp16.json" -- "$py" "${bench[@]}" \
      --env TORCHGATE_HALF=true
    step startup 150 --stdout "$OUT/startup.json" -- "$py" -m torchgate_bench bench \
      --startup --json --weights-dir "$work/weights" --log-dir "$work/logs" \
      --ready-timeout 120 --startup-requests "$requests" --env "TORCHGATE_DEVICE=$device" \
      --results-dir "$OUT/results"
    step tests 180 -- env -u TORCHGATE_DEVICE "$py" -m pytest -v -p no:cacheprovider \
      --junitxml="$work/tests.xml" tests/serving/test_cuda_forward.py \
      tests/serving/test_cuda_app.py tests/serving/test_reinit.py \
      tests/serving/test_forward.py tests/serving/test_graph_swaps.py \
      tests/serving/test_batch_shapes.py tests/serving/test_faults.py \
      tests/serving/test_device_faults.py tests/serving/test_batching.py \
      tests/serving/test_devices.py
    step aot 200 --stdout "$OUT/resnet101-aot.json" -- "$py" "${bench[@]}" \
      --env TORCHGATE_HALF=false --env TORCHGATE_GRAPH=aot --ready-timeout 180 \
      --env "TORCHGATE_COMPILED_DIR=$work/compiled"
  fi
  for log in "$work"/logs/*.log; do
    [[ -e "$log" ]] || continue
    echo "===== $(basename "$log")"
    tail -c 2000000 "$log"
  done > "$OUT/server-logs.txt"
  cp "$record" "$OUT/steps.jsonl"
  "$py" tools/device/summarize.py "$OUT" --steps "$record" --junit "$work/tests.xml" \
    --title "$title"
  local failed=0
  grep -q '"status": [^0]' "$record" && failed=1
  rm -rf "$work"  # the random weights alone are about 1 GB
  return $failed
}

main 2>&1 | tee -a "$OUT/check.log"
exit "${PIPESTATUS[0]}"
