#!/usr/bin/env bash
# The CUDA checks, for a session whose task is lent a GPU machine. There, from the repository
# root, with .whl carried (scripts/device/wheels.sh fills it here):
#   bash scripts/device/check.sh
# It loads all six models on CUDA (cold start, memory), runs the tests that touch the device
# paths, and benchmarks resnet101 at concurrency 64 with fp16 off and on (served vs raw, both on
# CUDA). Everything also lands in $OUT. About 6 minutes on an H100.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/torchgate-device}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"
python3 -m pytest -q -p no:cacheprovider tests/serving/test_forward.py tests/serving/test_devices.py \
  tests/serving/test_device_faults.py tests/serving/test_batching.py tests/api/test_fast_predict.py \
  2>&1 | tail -5 | tee "$OUT/tests.txt"
timeout 200 python3 -m app bench --startup --env TORCHGATE_DEVICE=cuda --json > "$OUT/startup.json"
echo "startup rc=$?"; tail -c 600 "$OUT/startup.json"
for half in false true; do
  timeout 150 python3 -m app bench --model resnet101 --concurrency 64 --duration 20 --raw-budget 30 \
    --env TORCHGATE_DEVICE=cuda --env TORCHGATE_HALF=$half --env TORCHGATE_ACCESS_LOG=false \
    --env TORCHGATE_MAX_BATCH_SIZE=resnet101=64 --json > "$OUT/resnet101-c64-half-$half.json"
  echo "resnet101 half=$half rc=$?"
  python3 - "$OUT/resnet101-c64-half-$half.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["scenarios"][0]
print({k: s.get(k) for k in ("served_over_raw", "server_cores_busy")}, s["predict"]["images_per_s"],
      d["raw"]["raw_images_per_s"], d["raw"]["best_variant"], d["raw"]["best_batch_size"])
PY
done
