"""``python -m torchgate_bench <command>``: the bench's own command line.

``python -m app bench`` (and the other bench commands of the service's command line) hand
over to this one with the same arguments when this package is installed.
"""

from __future__ import annotations

import typer

from torchgate_bench.builds_cli import bench_builds
from torchgate_bench.cli import bench
from torchgate_bench.explain import bench_explain
from torchgate_bench.graphs import bench_graphs
from torchgate_bench.precision import bench_precision
from torchgate_bench.replicas_cli import bench_replicas
from torchgate_bench.soak import soak

cli = typer.Typer(
    no_args_is_help=True,
    help="torchgate's benchmarks: each measuring run also writes its result as JSON.",
)
cli.command("bench")(bench)
cli.command("soak")(soak)
cli.command("bench-replicas")(bench_replicas)
cli.command("bench-graphs")(bench_graphs)
cli.command("bench-builds")(bench_builds)
cli.command("bench-explain")(bench_explain)
cli.command("bench-precision")(bench_precision)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
