"""``python -m app.bench``: the bench command on its own (same as ``python -m app bench``)."""

import typer

from app.bench.cli import bench

typer.run(bench)
