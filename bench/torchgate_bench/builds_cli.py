"""``python -m torchgate_bench bench-builds``: the typer command around builds.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from torchgate_bench.builds import BuildsOptions, run_builds
from torchgate_bench.results import DEFAULT_RESULTS_DIR, ResultsDir, ResultsRun


def bench_builds(
    baseline: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A checkout of the build to compare with (e.g. git worktree add DIR COMMIT).",
        ),
    ],
    current: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="The build under test.")
    ] = Path("."),
    rounds: Annotated[int, typer.Option(min=1, help="Alternating rounds per scenario.")] = 3,
    duration: Annotated[float, typer.Option(min=1.0, help="Measured seconds per load.")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0.0, help="Unmeasured seconds first.")] = 2.0,
    cold_starts: Annotated[int, typer.Option(min=1, help="Cold starts per build.")] = 3,
    weights_dir: Annotated[
        Path | None, typer.Option(help="Pretrained files (default: random, in a temp dir).")
    ] = None,
    results_dir: ResultsDir = DEFAULT_RESULTS_DIR,
) -> None:
    """Two builds side by side with serve's defaults: throughput, p99 and cold start ratios."""
    typer.echo(f"nproc {os.cpu_count()}, load average {' '.join(map(str, os.getloadavg()))}")
    results = ResultsRun(results_dir)
    options = BuildsOptions(
        baseline=baseline.resolve(),
        current=current.resolve(),
        rounds=rounds,
        duration_s=duration,
        warmup_s=warmup,
        cold_starts=cold_starts,
        weights_dir=weights_dir,
    )
    record = run_builds(options, report=typer.echo)
    widths = [
        max(len(str(v)) for v in column)
        for column in zip(record.columns, *record.rows, strict=True)
    ]
    for row in [record.columns, *record.rows]:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    for name, ratio in record.ratios.items():
        typer.echo(f"{name}: {ratio}")
    typer.echo(f"load average at the end {' '.join(map(str, os.getloadavg()))}")
    typer.echo(f"results: {results.write(record)}")
