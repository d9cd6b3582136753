"""Load all six models on the device, one at a time, as the server does, and report each.

For every model: its status (and reason), seconds to ready (build, weights, graph, warm-up),
and the device memory it added (``torch.cuda.memory_allocated``; resident memory on the CPU)
and the peak during its warm-up. Then, on the model named by --shapes-model, what the two ways
of serving every batch size cost: padding a batch to the next warmed size (what the server
does on CUDA) against warming, i.e. letting cuDNN tune, every size up to the limit.

The ImageNet weights are random state dicts saved under the official file names (the machine
has no internet), served with TORCHGATE_VERIFY_WEIGHTS=false: speed and memory do not depend
on the values. One JSON document goes to --out.

    python3 tools/device/load_models.py --device cuda --weights-dir W --out models.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.config import ALL_MODELS, Settings
from app.metrics import Metrics
from app.serving.batch_shapes import bucket_sizes, padded_size
from app.serving.devices import configure_backends, configure_threads, resolve_device
from app.serving.forward import ModelForward
from app.serving.registry import ModelRegistry
from torchgate_bench.server import rss_bytes
from torchgate_bench.weights import write_random_weights

MIB = 1024 * 1024
logger = logging.getLogger("load_models")


def _memory(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device)
    return rss_bytes(os.getpid())


def _peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


async def load_each(registry: ModelRegistry, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for name in registry.entries:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        before = _memory(device)
        started = time.perf_counter()
        entry = await registry.load(name)
        seconds = time.perf_counter() - started
        after, peak = _memory(device), _peak(device)
        details = entry.runtime.describe() if entry.runtime is not None else {}
        rows.append(
            {
                "model": name,
                "status": entry.status.value,
                "reason": entry.reason,
                "load_s": round(seconds, 3),
                "memory": "cuda allocated" if device.type == "cuda" else "process RSS",
                "memory_added_mib": round((after - before) / MIB, 1),
                "memory_after_mib": round(after / MIB, 1),
                "peak_mib": round(peak / MIB, 1) if peak is not None else None,
                "graph": details.get("graph"),
                "max_batch_size": (details.get("batching") or {}).get("max_batch_size"),
            }
        )
        logger.info("%s", json.dumps(rows[-1]))
    return rows


def _timer(forward: ModelForward, example: Callable[[int], tuple[torch.Tensor, ...]]):
    """Seconds of one forward of ``n`` rows straight through the serving graph (no padding),
    synchronised, with cuDNN's autotuner as the server leaves it (on, on CUDA)."""
    device = forward.device

    def run(n: int) -> float:
        inputs = [t.to(device) for t in example(n)]
        if forward.graph.channels_last and inputs[0].dim() == 4:
            inputs[0] = inputs[0].contiguous(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            forward.graph.forward(*inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    return run


def measure_shapes(
    forward: ModelForward,
    example: Callable[[int], tuple[torch.Tensor, ...]],
    max_batch_size: int,
    budget_s: float,
) -> dict[str, Any]:
    """Per batch size n that is not a warmed (bucket) size: the first forward at n (cuDNN
    tunes the new shape), the steady one, and the steady one of its padded size. Sizes with
    the most padding go first, while the budget lasts."""
    run = _timer(forward, example)
    deadline = time.perf_counter() + budget_s
    buckets = bucket_sizes(max_batch_size)
    candidates = [n for n in range(2, max_batch_size) if n not in buckets]
    candidates.sort(key=lambda n: (-padded_size(n, buckets) / n, n))
    bucket_ms: dict[int, float] = {}
    rows = []
    for n in candidates:
        if time.perf_counter() > deadline:
            break
        padded = padded_size(n, buckets)
        if padded not in bucket_ms:
            run(padded)
            bucket_ms[padded] = statistics.median(run(padded) for _ in range(2)) * 1000
        first = run(n) * 1000
        steady = statistics.median(run(n) for _ in range(2)) * 1000
        rows.append(
            {
                "n": n,
                "first_ms": round(first, 2),
                "steady_ms": round(steady, 2),
                "padded_to": padded,
                "padded_ms": round(bucket_ms[padded], 2),
            }
        )
    tuning = [max(0.0, r["first_ms"] - r["steady_ms"]) / 1000 for r in rows]
    overhead = [r["padded_ms"] / r["steady_ms"] for r in rows if r["steady_ms"] > 0]
    return {
        "max_batch_size": max_batch_size,
        "buckets": buckets,
        "sizes_measured": len(rows),
        "sizes_not_warmed": len(candidates),
        "tuning_s_mean": round(statistics.mean(tuning), 3) if tuning else None,
        # what a start-up that warmed every size would add, for this model alone
        "warm_every_size_s": round(statistics.mean(tuning) * len(candidates), 1)
        if tuning
        else None,
        "padded_over_exact_mean": round(statistics.mean(overhead), 3) if overhead else None,
        "rows": rows,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("models"))
    parser.add_argument("--max-batch-size", default="resnet101=64", help="as the bench's")
    parser.add_argument("--shapes-model", default="resnet101")
    parser.add_argument("--shapes-budget", type=float, default=40.0, help="seconds")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    for name in ("alexnet", "vgg16", "resnet101"):
        write_random_weights(name, args.weights_dir)
    logger.info("ImageNet weights: random state dicts under the official names (offline)")
    settings = Settings(
        models=ALL_MODELS,
        device=args.device,
        weights_dir=args.weights_dir,
        checkpoint_dir=args.checkpoint_dir,
        download_weights=False,
        verify_weights=False,
        max_batch_size=args.max_batch_size,
        admin_token="unused",
    )
    device = resolve_device(settings.device)
    configure_backends(device)
    configure_threads(settings.torch_threads_per_worker(os.cpu_count() or 1, device.type == "cuda"))
    registry = ModelRegistry(settings, device, Metrics(device))
    document: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "weights": "random ImageNet state dicts under the official file names (offline)",
    }
    try:
        document["models"] = await load_each(registry, device)
        entry = registry.entries.get(args.shapes_model)
        if entry is not None and entry.runtime is not None and args.shapes_budget > 0:
            runtime = entry.runtime
            document["shapes"] = {
                "model": args.shapes_model,
                **await asyncio.to_thread(
                    measure_shapes,
                    runtime.forward,
                    runtime.forward.example,
                    runtime.batching.max_batch_size,
                    args.shapes_budget,
                ),
            }
    finally:
        await registry.close()
        args.out.write_text(json.dumps(document, indent=2))
    rows = document.get("models", [])
    failed = [row["model"] for row in rows if row["status"] != "ready"]
    print(json.dumps({"ready": len(rows) - len(failed), "not_ready": failed}))


if __name__ == "__main__":
    asyncio.run(main())
