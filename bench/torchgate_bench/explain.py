"""``python -m torchgate_bench bench-explain``: what an explanation costs beside a prediction.

One real ``python -m app serve`` with the chosen classifiers; per model, one client sends the
same upload again and again, one request at a time: predict, then explain with integrated
gradients at each ``--steps`` (and saliency, and Grad-CAM where the model has a conv block).
Each figure is a request's round trip on loopback (p50 and p90 of ``--requests``), so the
ratio to predict's p50 is what a client waits more for an explanation. ImageNet models serve
random weights unless ``--weights-dir`` has the official files (latency is the
architecture's, not the values').
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer

from torchgate_bench.latency import LatencySummary
from torchgate_bench.payload import UploadFile
from torchgate_bench.results import DEFAULT_RESULTS_DIR, Record, ResultsDir, ResultsRun

DEFAULT_MODELS = "cnn,lstm"
DEFAULT_STEPS = "32,64"
PREDICT = "predict"


@dataclass(frozen=True)
class ExplainRow:
    model: str
    what: str  # "predict", "integrated_gradients steps=32", "saliency", "gradcam"
    requests: int
    latency: LatencySummary


def _time(
    client: httpx.Client, path: str, upload: UploadFile, requests: int, warmup: int
) -> list[float]:
    headers = {"Content-Type": upload.content_type}
    samples = []
    for number in range(warmup + requests):
        started = time.perf_counter()
        response = client.post(path, content=upload.data, headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:200]}")
        if number >= warmup:
            samples.append(elapsed)
    return samples


def variants(model: str, steps: list[int]) -> list[tuple[str, str]]:
    """(row name, query) of everything measured for ``model``, predict first."""
    from app.zoo import SPECS

    explain = SPECS[model].explain
    found = [(PREDICT, "")]
    found += [(f"integrated_gradients steps={s}", f"steps={s}") for s in steps]
    found.append(("saliency", "method=saliency"))
    if explain is not None and explain.gradcam_layer is not None:
        found.append(("gradcam", "method=gradcam"))
    return found


def measure(
    base_url: str, model: str, steps: list[int], requests: int, warmup: int
) -> list[ExplainRow]:
    """Every variant of ``model``, timed from this client, one request in flight."""
    from torchgate_bench.images import input_file_for

    upload = input_file_for(model)
    rows = []
    with httpx.Client(base_url=base_url, timeout=600) as client:
        for what, query in variants(model, steps):
            verb = "predict" if what == PREDICT else "explain"
            path = f"/v1/models/{model}/{verb}" + (f"?{query}" if query else "")
            samples = _time(client, path, upload, requests, warmup)
            rows.append(ExplainRow(model, what, requests, LatencySummary.from_seconds(samples)))
    return rows


def explain_record(rows: list[ExplainRow], random_weights: list[str]) -> Record:
    """One row per model and variant; each variant's p50 over its model's predict p50."""
    predict = {r.model: r.latency.p50_ms for r in rows if r.what == PREDICT}
    table: list[list[object]] = []
    ratios: dict[str, float | None] = {}
    for r in rows:
        base = predict.get(r.model)
        ratio = r.latency.p50_ms / base if base else None
        table.append([r.model, r.what, r.requests, r.latency.p50_ms, r.latency.p90_ms, ratio])
        if r.what != PREDICT:
            ratios[f"{r.model} {r.what} / predict, p50"] = ratio
    notes = ["one request in flight, loopback HTTP; JSON answers (the attributions included)"]
    if random_weights:
        notes.append(f"random weights for {', '.join(random_weights)}: latency only")
    return Record(
        kind="explain",
        title="explanations beside predictions: round-trip ms per request",
        columns=["model", "request", "requests", "p50 ms", "p90 ms", "p50 / predict"],
        rows=table,
        ratios=ratios,
        notes=notes,
    )


def table(rows: list[ExplainRow]) -> str:
    predict = {r.model: r.latency.p50_ms for r in rows if r.what == PREDICT}
    lines = [f"{'model':<10}{'request':<32}{'p50 ms':>9}{'p90 ms':>9}{'x predict':>11}"]
    for r in rows:
        ratio = r.latency.p50_ms / predict[r.model] if predict.get(r.model) else float("nan")
        lines.append(
            f"{r.model:<10}{r.what:<32}{r.latency.p50_ms:>9.1f}{r.latency.p90_ms:>9.1f}"
            f"{ratio:>10.1f}x"
        )
    return "\n".join(lines)


def _server_env(models: list[str], checkpoint_dir: Path, weights_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TORCHGATE_MODELS": ",".join(models),
            "TORCHGATE_CHECKPOINT_DIR": str(checkpoint_dir.resolve()),
            "TORCHGATE_WEIGHTS_DIR": str(weights_dir.resolve()),
            "TORCHGATE_DOWNLOAD_WEIGHTS": "false",  # loopback only: never fetch during a bench
            "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(32),
            "TORCHGATE_ACCESS_LOG": "false",
        }
    )
    return env


def bench_explain(
    models: Annotated[str, typer.Option(help="Comma-separated classifiers.")] = DEFAULT_MODELS,
    steps: Annotated[str, typer.Option(help="Integrated gradients' steps, comma-separated.")] = (
        DEFAULT_STEPS
    ),
    requests: Annotated[int, typer.Option(min=1, help="Timed requests per variant.")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed requests first.")] = 2,
    checkpoint_dir: Annotated[Path, typer.Option(help="Trained cnn/lstm checkpoints.")] = Path(
        "models"
    ),
    weights_dir: Annotated[
        Path | None, typer.Option(help="Pretrained files (default: random weights, temp dir).")
    ] = None,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Explain latency (integrated gradients at each --steps, saliency, Grad-CAM) beside predict."""
    from app.zoo import SPECS
    from torchgate_bench.server import ServerProcess
    from torchgate_bench.weights import provide_random_weights

    names = [m.strip() for m in models.split(",") if m.strip()]
    classifiers = [name for name, spec in SPECS.items() if spec.is_classifier]
    unknown = [m for m in names if m not in classifiers]
    if unknown or not names:
        raise typer.BadParameter(f"choose classifiers of {classifiers}; got {unknown or names}")
    try:
        step_list = [int(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"steps are integers; got {steps!r}") from None
    if not step_list or not all(1 <= s <= 256 for s in step_list):
        raise typer.BadParameter(f"steps are 1..256; got {steps!r}")
    results = ResultsRun(results_dir)
    typer.echo(f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="torchgate-explain-") as scratch:
        weights = weights_dir or Path(scratch) / "weights"
        weights.mkdir(parents=True, exist_ok=True)
        random_weights = provide_random_weights(names, weights)
        env = _server_env(names, checkpoint_dir, weights)
        if random_weights:
            env["TORCHGATE_VERIFY_WEIGHTS"] = "false"
        rows: list[ExplainRow] = []
        with ServerProcess(env, log_dir=Path(scratch)) as server:
            for name in names:
                rows += measure(server.base_url, name, step_list, requests, warmup)
    path = results.write(explain_record(rows, random_weights))
    typer.echo(table(rows))
    if random_weights:
        typer.echo(f"weights: RANDOM for {', '.join(random_weights)} (latency only)")
    typer.echo(f"load average after: {os.getloadavg()[0]:.2f}")
    typer.echo(f"results: {path}", err=True)
