"""``python -m torchgate_bench``: the bench command on its own (same as ``python -m torchgate_bench bench``)."""

import typer

from torchgate_bench.cli import bench

typer.run(bench)
