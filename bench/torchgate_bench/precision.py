"""``python -m torchgate_bench bench-precision``: float32 against each reduced precision, per
model, measured the way a precision trial measures it (``POST /admin/models/{name}/precision``):
the serving forward's converted copy, both run on the same batches, scored on the model's
evaluation set, and whether the trial's gate would promote it.

The Fashion-MNIST models are scored on the test split (the GAN by the cnn's consistency on its
samples); the ImageNet models run with random weights (no pretrained file is needed; batch-norm
statistics measured as torchgate_bench.weights does, so activations keep a trained net's scale),
so they are scored by top-1 agreement with float32 on random normalized inputs, which says how
often the precision changes an answer, not how accurate the model is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import nn

from app.config import ALL_MODELS
from torchgate_bench.graphs import _module_and_example
from torchgate_bench.results import DEFAULT_RESULTS_DIR, Record, ResultsDir, ResultsRun
from torchgate_bench.weights import _calibrate_batch_norm

CANDIDATES = ("bfloat16", "float16", "int8_dynamic")
_GAN_SEED = 0


@dataclass(frozen=True)
class PrecisionRow:
    model: str
    dtype: str
    metric: str
    float32: float | None
    candidate: float | None
    agreement: float | None
    float32_ips: float | None
    candidate_ips: float | None
    ratio: float | None
    promoted: bool | None
    note: str = ""


def _forward(module: nn.Module, classifier: bool, dtype: str) -> Callable[..., torch.Tensor]:
    """The serving path's forward (app.serving.forward) over a copy in ``dtype``."""
    from app.serving.forward import ModelForward

    forward = ModelForward(module, torch.device("cpu"), classifier, lambda b: ())
    forward.set_precision(dtype)
    return lambda *inputs: forward.run(inputs, postprocess=False)


def _fashion_batches(
    name: str, data_dir: Path, limit: int
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor | None]]]:
    from app import datasets

    images, labels = datasets.load_tensors("fashion-mnist", "test", data_dir)
    images, labels = images[:limit], labels[:limit]
    if name == "lstm":
        images = images.squeeze(1)
    return lambda: ((images[i : i + 500], labels[i : i + 500]) for i in range(0, len(labels), 500))


def _random_batches(
    example: Callable[[int], tuple[torch.Tensor, ...]], count: int
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor | None]]]:
    torch.manual_seed(0)
    inputs = torch.cat([example(8)[0] for _ in range((count + 7) // 8)])[:count]
    return lambda: ((inputs[i : i + 8], None) for i in range(0, count, 8))


def measure(
    name: str,
    dtypes: tuple[str, ...],
    checkpoint_dir: Path,
    data_dir: Path,
    limit: int,
    imagenet_inputs: int,
    max_drop: float,
    gan_per_class: int = 100,
) -> list[PrecisionRow]:
    from app.comparison import compare_classifiers, compare_generators, judge
    from app.datasets import NORMALIZATION
    from app.serving.precision import check_precision
    from app.zoo import SPECS

    spec = SPECS[name]
    module, example = _module_and_example(name, checkpoint_dir)
    if spec.pretrained is not None:  # a trained net's activation scale, as bench weights have
        _calibrate_batch_norm(module)
    judge_module = _module_and_example("cnn", checkpoint_dir)[0] if name == "gan" else None
    batches = None
    if spec.pretrained is not None:
        batches = _random_batches(example, imagenet_inputs)
    elif name != "gan":
        batches = _fashion_batches(name, data_dir, limit)
    rows = []
    for dtype in dtypes:
        try:
            check_precision(module, torch.device("cpu"), dtype, name)
        except Exception as exc:  # the trial's 400: the row says why
            rows.append(PrecisionRow(name, dtype, "-", *[None] * 7, note=str(exc)))
            continue
        baseline = _forward(module, spec.is_classifier, "float32")
        candidate = _forward(module, spec.is_classifier, dtype)
        if name == "gan":
            assert judge_module is not None
            result = compare_generators(
                baseline, candidate, _forward(judge_module, True, "float32"),
                per_class=gan_per_class, seed=_GAN_SEED, num_classes=10,
                z_dim=spec.latent_size, normalization=NORMALIZATION["fashion-mnist"],
            )  # fmt: skip
        else:
            assert batches is not None
            total = imagenet_inputs if spec.pretrained is not None else limit
            result = compare_classifiers(baseline, candidate, batches(), 1000 if spec.pretrained
                                         else 10, total)  # fmt: skip
        rows.append(_row(name, dtype, result, judge, max_drop))
    return rows


def _row(
    name: str, dtype: str, result: dict[str, Any], judge: Callable[..., Any], max_drop: float
) -> PrecisionRow:
    metric = result["metric"]
    base, cand = result["baseline"], result["candidate"]
    promoted = judge(base, cand, metric, max_drop, result["n"])[0]
    note = f"n={result['n']}" + ("; random weights" if metric == "agreement" else "")
    return PrecisionRow(
        name, dtype, metric, base.get(metric), cand.get(metric), result["agreement"],
        base["images_per_second"], cand["images_per_second"], result["throughput_ratio"],
        promoted, note,
    )  # fmt: skip


def _cell(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[PrecisionRow]) -> str:
    lines = [
        f"{'model':<10}{'dtype':<14}{'metric':<13}{'float32':>9}{'dtype':>9}{'agree':>8}"
        f"{'f32 img/s':>11}{'img/s':>10}{'ratio':>7}  promoted"
    ]
    for r in rows:
        promoted = "-" if r.promoted is None else ("yes" if r.promoted else "no")
        lines.append(
            f"{r.model:<10}{r.dtype:<14}{r.metric:<13}{_cell(r.float32):>9}"
            f"{_cell(r.candidate):>9}{_cell(r.agreement):>8}{_cell(r.float32_ips, 1):>11}"
            f"{_cell(r.candidate_ips, 1):>10}{_cell(r.ratio, 2):>7}  {promoted}  {r.note}"
        )
    return "\n".join(lines)


def _cells(r: PrecisionRow) -> list[object]:
    return [
        r.model, r.dtype, r.metric, r.float32, r.candidate, r.agreement, r.float32_ips,
        r.candidate_ips, r.ratio, r.promoted, r.note,
    ]  # fmt: skip


def precision_record(rows: list[PrecisionRow], max_drop: float) -> Record:
    return Record(
        kind="precision",
        title="float32 against each reduced precision, per model, on the CPU",
        columns=[
            "model",
            "dtype",
            "metric",
            "float32",
            "candidate",
            "top-1 agreement",
            "float32 images/s",
            "candidate images/s",
            "images/s ratio",
            "promoted",
            "note",
        ],
        rows=[_cells(r) for r in rows],
        ratios={f"{r.model} {r.dtype} / float32, images/s": r.ratio for r in rows},
        notes=[
            f"promoted: the trial's gate at max_accuracy_drop={max_drop:g}",
            "ImageNet models with random weights: scored by top-1 agreement with float32 on "
            "random normalized inputs, not accuracy",
            "images/s over the evaluation batches themselves, both sides on the same batches",
        ],
    )


def bench_precision(
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = ",".join(ALL_MODELS),
    dtypes: Annotated[
        str, typer.Option(help=f"Comma-separated, of {', '.join(CANDIDATES)}.")
    ] = ",".join(CANDIDATES),
    limit: Annotated[
        int, typer.Option(min=10, help="Fashion-MNIST test images (cnn, lstm).")
    ] = 10_000,
    gan_per_class: Annotated[
        int, typer.Option(min=1, help="GAN samples per class, judged by the cnn.")
    ] = 100,
    imagenet_inputs: Annotated[
        int, typer.Option(min=1, help="Random inputs per ImageNet model.")
    ] = 32,
    max_accuracy_drop: Annotated[float, typer.Option(min=0.0, help="The gate.")] = 0.005,
    checkpoint_dir: Annotated[Path, typer.Option(help="The Fashion-MNIST checkpoints.")] = Path(
        "models"
    ),
    data_dir: Annotated[Path, typer.Option(help="Where the Fashion-MNIST test split is.")] = Path(
        "data"
    ),
    threads: Annotated[int | None, typer.Option(min=1, help="Intra-op threads.")] = None,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Accuracy (or agreement) and images/s of float32 and each reduced precision, per model."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    chosen = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    unknown = [m for m in names if m not in ALL_MODELS] + [d for d in chosen if d not in CANDIDATES]
    if unknown:
        raise typer.BadParameter(f"unknown: {unknown}; models {ALL_MODELS}, dtypes {CANDIDATES}")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    typer.echo(
        f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}"
    )
    results = ResultsRun(results_dir)
    rows: list[PrecisionRow] = []
    for name in names:
        found = measure(
            name, chosen, checkpoint_dir, data_dir, limit, imagenet_inputs, max_accuracy_drop,
            gan_per_class,
        )  # fmt: skip
        rows += found
        typer.echo(table(found).split("\n", 1)[1], err=True)  # progress, a model at a time
    path = results.write(precision_record(rows, max_accuracy_drop))
    typer.echo(table(rows))
    typer.echo(f"load average after: {os.getloadavg()[0]:.2f}")
    typer.echo(f"results: {path}", err=True)
