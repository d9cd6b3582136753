"""The model's raw in-process throughput: the ceiling a server on this machine could reach.

Two ceilings are measured, in the server's configuration (its environment's settings):

- forward: the best throughput over graph variants (eager, channels_last, TorchScript
  trace+freeze, optionally torch.compile; fp16 autocast too with TORCHGATE_HALF on CUDA),
  intra-op thread counts and batch sizes up to the server's largest. On CUDA with
  ``cudnn.benchmark`` on, as the server runs, at every batch size the server runs (its padded
  sizes), each call timed to the end of its kernels;
- decode: images/s of decoding + preprocessing the input file on as many threads as the
  server's decode pool has.

On CUDA the two run on different hardware at once, so raw = their minimum. On the CPU they
share the cores, so raw = ``1 / (1/forward_images_per_s + decode_seconds_per_image)`` with the
decode timed on one thread. It runs as its own process (``python -m torchgate_bench.raw``) before
the server starts, so the two never compete for the cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.config import Settings
from torchgate_bench.timing import decode_ceiling, decode_seconds, forward_trials

SMALL_BATCH_SIZES = (1, 8, 16, 32, 64)
IMAGENET_BATCH_SIZES = (1, 4, 8, 16)
MAX_IMAGE_PIXELS = 40_000_000


@dataclass
class RawResult:
    model: str
    torch_version: str
    torch_threads: int
    decode_ms_per_image: float
    best_variant: str
    best_threads: int
    best_batch_size: int
    forward_images_per_s: float
    raw_images_per_s: float
    trials: list[dict[str, float | int | str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    decode_threads: int = 1
    decode_images_per_s: float = 0.0  # the decode ceiling, at decode_threads
    max_batch_size: int = 0
    rule: str = "serial"  # serial (CPU: forward and decode share the cores) | min (CUDA)

    def raw_up_to(self, batch_size: int) -> float | None:
        """The raw rate over batches of at most ``batch_size``: what a load that keeps that
        many images in flight could reach at best (None: no such batch was measured)."""
        rates = [
            float(trial["images_per_s"])
            for trial in self.trials
            if int(trial["batch_size"]) <= batch_size
        ]
        if not rates:
            return None
        return with_decode(
            max(rates), self.decode_ms_per_image / 1000, self.decode_images_per_s, self.rule
        )


def with_decode(forward: float, decode_s: float, decode_rate: float, rule: str) -> float:
    """A forward rate with decoding as the server does both: on the CPU they share the cores
    (serial), on CUDA they overlap and the slower one bounds the rate (min)."""
    return min(forward, decode_rate) if rule == "min" else 1.0 / (1.0 / forward + decode_s)


def batch_sizes(device: torch.device, pretrained: bool, max_batch_size: int) -> list[int]:
    """On CUDA the sizes the server runs (it pads each batch up to one of them); on the CPU a
    spread up to the server's limit."""
    from app.serving.batch_shapes import bucket_sizes

    if device.type == "cuda":
        return bucket_sizes(max_batch_size)
    base = IMAGENET_BATCH_SIZES if pretrained else SMALL_BATCH_SIZES
    return sorted({size for size in base if size <= max_batch_size} | {max_batch_size})


def thread_candidates(threads: int | None) -> list[int]:
    """The given count, else torch's default and 1: on a busy or small machine one intra-op
    thread often beats all cores (no OpenMP barrier waits behind other processes)."""
    if threads is not None:
        return [threads]
    return list(dict.fromkeys([torch.get_num_threads(), 1]))


def measure(
    model: str,
    weights_dir: Path,
    checkpoint_dir: Path,
    input_path: Path,
    budget_s: float,
    try_compile: bool = False,
    threads: int | None = None,
    device: str = "cpu",
    half: bool = False,
    settings: Settings | None = None,
) -> RawResult:
    """Load ``model`` like the server does, on its device (``auto``: CUDA when present), then
    time decode (CPU) and forward in this process; ``half`` adds fp16 autocast on CUDA.
    ``settings`` are the server's (default: from this process's environment)."""
    from app.serving.devices import configure_backends, configure_threads, resolve_device
    from app.serving.loading import WeightsLocation, load_model
    from app.zoo import SPECS

    settings = settings or Settings()
    spec = SPECS[model]
    where = WeightsLocation(weights_dir, checkpoint_dir, download=False, verify=False)
    target = resolve_device(device)
    cuda = target.type == "cuda"
    configure_backends(target)  # cudnn.benchmark on CUDA, as the server
    cores = os.cpu_count() or 1
    configure_threads(settings.torch_threads_per_worker(cores, cuda=cuda))
    loaded = load_model(spec, where, target)
    codec = loaded.codec
    if codec is None:
        raise ValueError(f"{model} takes no image input; bench a classifier instead.")
    data = input_path.read_bytes()

    def decode() -> torch.Tensor:
        return codec.from_image(data, MAX_IMAGE_PIXELS)

    decode_s = decode_seconds(decode, budget_s / 10)
    pool = settings.decode_threads_per_worker(cores, cuda=cuda)
    decode_rate = decode_ceiling(decode, pool, budget_s / 10)
    max_batch = settings.batch_size_for(model, spec.max_batch_size)
    sizes = batch_sizes(target, spec.pretrained is not None, max_batch)
    counts = thread_candidates(threads) if not cuda else [torch.get_num_threads()]
    trials, skipped = forward_trials(
        loaded.module, decode(), sizes, budget_s, counts, try_compile, target, half
    )
    if not trials:
        raise RuntimeError(f"no forward variant could run {model}: {skipped}")
    best = max(trials, key=lambda trial: trial.images_per_s)
    forward = best.images_per_s
    raw = with_decode(forward, decode_s, decode_rate, "min" if cuda else "serial")
    return RawResult(
        model=model,
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
        decode_ms_per_image=decode_s * 1000,
        best_variant=best.variant,
        best_threads=best.threads,
        best_batch_size=best.batch_size,
        forward_images_per_s=forward,
        raw_images_per_s=raw,
        trials=[{**asdict(t), "images_per_s": t.images_per_s} for t in trials],
        skipped=skipped,
        device=str(target),
        decode_threads=pool,
        decode_images_per_s=decode_rate,
        max_batch_size=max_batch,
        rule="min" if cuda else "serial",
    )


def run_raw(
    model: str,
    weights_dir: Path,
    checkpoint_dir: Path,
    input_path: Path,
    budget_s: float,
    try_compile: bool = False,
    threads: int | None = None,
    env: Mapping[str, str] | None = None,
    device: str = "cpu",
    half: bool = False,
) -> RawResult:
    """``measure`` in a child interpreter, so the parent's threads and imports stay out of it.

    ``env`` should be the server's: OpenMP/MKL knobs (OMP_WAIT_POLICY, OMP_NUM_THREADS, ...)
    are read once at process start and change the forward's speed as much as any graph mode.
    """
    command = [
        sys.executable,
        "-m",
        "torchgate_bench.raw",
        f"--model={model}",
        f"--weights-dir={weights_dir}",
        f"--checkpoint-dir={checkpoint_dir}",
        f"--input={input_path}",
        f"--budget={budget_s}",
        f"--device={device}",
    ]
    if half:
        command.append("--half")
    if try_compile:
        command.append("--try-compile")
    if threads is not None:
        command.append(f"--threads={threads}")
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=budget_s * 4 + 300,
        check=False,
        env=dict(env) if env is not None else None,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the raw measurement failed:\n{completed.stderr.strip()[-3000:]}")
    return RawResult(**json.loads(completed.stdout))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m torchgate_bench.raw", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True, help="the image file to decode")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds for the forward grid")
    parser.add_argument("--try-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="only this many torch threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--half", action="store_true", help="add fp16 autocast (CUDA only)")
    ns = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(name)s: %(message)s", stream=sys.stderr)
    result = measure(
        ns.model,
        ns.weights_dir,
        ns.checkpoint_dir,
        ns.input,
        ns.budget,
        ns.try_compile,
        ns.threads,
        ns.device,
        ns.half,
    )
    payload: dict[str, Any] = asdict(result)
    sys.stdout.write(json.dumps(payload) + "\n")


if __name__ == "__main__":
    main()
