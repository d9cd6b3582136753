"""``python -m torchgate_bench bench-graphs``: eager vs AOTInductor vs TorchScript (vs
torch.compile) per model on this machine: forward ms per batch at batch 1 and at the batch the
server forms, the seconds each graph takes to build and the package size. The zoo's
``cpu_graph`` defaults come from this table (docs/graph-modes.md).

ImageNet models get random weights (speed does not depend on their values); the Fashion-MNIST
models use the checkpoints in ``--checkpoint-dir``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import torch
import typer
from torch import nn

from app.config import ALL_MODELS
from torchgate_bench.results import DEFAULT_RESULTS_DIR, Record, ResultsDir, ResultsRun

MODES = ("eager", "aot", "aot-frozen", "script", "script-onednn", "compile")


@dataclass(frozen=True)
class GraphRow:
    model: str
    mode: str
    threads: int
    build_s: float
    package_bytes: int | None
    ms_per_batch: dict[int, float]
    max_difference: float


def _module_and_example(
    name: str, checkpoint_dir: Path
) -> tuple[nn.Module, Callable[[int], tuple[torch.Tensor, ...]]]:
    import torchvision

    from app.serving.loading import WeightsLocation, load_model
    from app.zoo import SPECS

    spec = SPECS[name]
    if spec.pretrained is not None:
        torch.manual_seed(0)
        module = torchvision.models.get_model(name, weights=None).eval().requires_grad_(False)
        return module, lambda b: (torch.randn(b, 3, 224, 224),)
    where = WeightsLocation(checkpoint_dir, checkpoint_dir, download=False, verify=False)
    loaded = load_model(spec, where, torch.device("cpu"))
    if loaded.codec is not None:
        return loaded.module, loaded.codec.example
    latent = spec.latent_size
    return loaded.module, lambda b: (torch.randn(b, latent), torch.arange(b) % 10)


def _time_ms(
    forward: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], seconds: float
) -> float:
    with torch.inference_mode():
        for _ in range(3):
            forward(*inputs)
        samples: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(samples) < 5:
            started = time.perf_counter()
            forward(*inputs)
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _build(
    mode: str,
    module: nn.Module,
    example: Callable[[int], tuple[torch.Tensor, ...]],
    max_batch: int,
    channels_last: bool,
    cache: Path,
) -> tuple[Callable[..., torch.Tensor], int | None]:
    """The graph as the server builds it: eager and TorchScript in the spec's layout (inputs
    converted per batch, as ModelForward does), AOTInductor exported from that module."""
    from app.serving.aot import CompiledGraph, compile_package
    from app.serving.graphs import build_graph

    if not mode.startswith("aot"):
        graph = build_graph(module, mode, channels_last, example(1), classifier=True)
        if graph.mode != mode:
            raise RuntimeError(f"{mode} fell back to eager")
        if mode == "compile":
            with torch.inference_mode():
                graph.forward(*example(max_batch))  # torch.compile compiles at its first call
        if not channels_last:
            return graph.forward, None

        def in_layout(first: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
            return graph.forward(first.contiguous(memory_format=torch.channels_last), *rest)

        return in_layout, None
    path = cache / f"{type(module).__name__}-{max_batch}-{mode}.pt2"
    compile_package(module, example(1), max_batch, path, freeze=mode == "aot-frozen")
    shapes = [t.shape[1:] for t in example(1)]
    return CompiledGraph(path, module, shapes, max_batch, torch.device("cpu")), path.stat().st_size


def measure(
    name: str,
    modes: tuple[str, ...],
    checkpoint_dir: Path,
    seconds: float,
    cache: Path,
    threads: int | None = None,
) -> list[GraphRow]:
    from app.serving.graphs import max_difference
    from app.zoo import SPECS

    spec = SPECS[name]
    threads = threads or spec.cpu_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    module, example = _module_and_example(name, checkpoint_dir)
    build_graph_first = ("eager", *[m for m in modes if m != "eager"])  # the layout is set once
    batches = sorted({1, spec.max_batch_size})
    inputs = {b: example(b) for b in batches}
    rows = []
    for mode in build_graph_first:
        started = time.perf_counter()
        try:
            forward, size = _build(
                mode, module, example, spec.max_batch_size, spec.channels_last, cache
            )
        except Exception as exc:
            typer.echo(f"{name} {mode}: failed ({type(exc).__name__}: {exc})", err=True)
            continue
        build_s = time.perf_counter() - started
        difference = max_difference(forward, module, example(3), spec.is_classifier)
        ms = {b: _time_ms(forward, inputs[b], seconds) for b in batches}
        rows.append(GraphRow(name, mode, threads, build_s, size, ms, difference))
    return rows


def _table(rows: list[GraphRow]) -> str:
    lines = [
        f"{'model':<10}{'mode':<14}{'thr':>4}{'build s':>9}{'pkg MB':>8}  ms per batch (vs eager)"
    ]
    eager = {r.model: r.ms_per_batch for r in rows if r.mode == "eager"}
    for r in rows:
        size = f"{r.package_bytes / 1e6:.1f}" if r.package_bytes else "-"
        cells = []
        for batch, ms in r.ms_per_batch.items():
            ratio = eager.get(r.model, {}).get(batch)
            cells.append(f"b{batch}: {ms:.2f}" + (f" ({ms / ratio:.2f}x)" if ratio else ""))
        lines.append(
            f"{r.model:<10}{r.mode:<14}{r.threads:>4}{r.build_s:>9.1f}{size:>8}  "
            + ", ".join(cells)
            + f"  diff {r.max_difference:.1e}"
        )
    return "\n".join(lines)


def graphs_record(rows: list[GraphRow]) -> Record:
    """One row per model and mode; each mode's forward time over eager's as the ratios."""
    eager = {r.model: r.ms_per_batch for r in rows if r.mode == "eager"}
    ratios: dict[str, float | None] = {}
    table: list[list[object]] = []
    for r in rows:
        first, served = min(r.ms_per_batch), max(r.ms_per_batch)
        size = r.package_bytes / 1e6 if r.package_bytes else None
        times = r.ms_per_batch
        table.append(
            [
                r.model,
                r.mode,
                r.threads,
                r.build_s,
                size,
                times[first],
                times[served],
                served,
                r.max_difference,
            ]
        )
        if r.mode != "eager" and r.model in eager:
            for batch, ms in r.ms_per_batch.items():
                base = eager[r.model].get(batch)
                ratios[f"{r.model} {r.mode} / eager, ms at batch {batch}"] = (
                    ms / base if base else None
                )
    return Record(
        kind="graphs",
        title="graph modes per model: forward ms per batch on the CPU",
        columns=[
            "model",
            "mode",
            "threads",
            "build s",
            "package MB",
            "ms at batch 1",
            "ms at the served batch",
            "served batch",
            "max difference",
        ],
        rows=table,
        ratios=ratios,
        notes=["ImageNet models with random weights; Fashion-MNIST ones from the checkpoints"],
    )


def bench_graphs(
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = ",".join(ALL_MODELS),
    modes: Annotated[
        str, typer.Option(help=f"Comma-separated, of {', '.join(MODES)}.")
    ] = "eager,aot,script,script-onednn",
    seconds: Annotated[float, typer.Option(min=0.1, help="Timing per batch size.")] = 2.0,
    checkpoint_dir: Annotated[Path, typer.Option(help="The Fashion-MNIST checkpoints.")] = Path(
        "models"
    ),
    threads: Annotated[
        int | None, typer.Option(min=1, help="Intra-op threads (default: as the server).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per row.")] = False,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Forward ms per batch, build seconds and package size of each graph mode, per model."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = [m for m in names if m not in ALL_MODELS] + [m for m in chosen if m not in MODES]
    if unknown:
        raise typer.BadParameter(f"unknown: {unknown}; models {ALL_MODELS}, modes {MODES}")
    typer.echo(
        f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}"
    )
    results = ResultsRun(results_dir)
    rows: list[GraphRow] = []
    with tempfile.TemporaryDirectory(prefix="torchgate-graphs-") as cache:
        for name in names:
            found = measure(name, chosen, checkpoint_dir, seconds, Path(cache), threads)
            rows += found
            for row in found:
                if json_output:
                    typer.echo(json.dumps(asdict(row)))
    path = results.write(graphs_record(rows))
    typer.echo(_table(rows))
    typer.echo(f"load average after: {os.getloadavg()[0]:.2f}")
    typer.echo(f"results: {path}", err=True)
