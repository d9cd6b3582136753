"""A rich progress bar for training steps that shows the running loss and accuracy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["training_progress"]


@contextmanager
def training_progress(enabled: bool = True) -> Iterator[Progress]:
    """A Progress whose tasks carry a ``metrics`` field (e.g. 'loss 0.31 acc 0.89').

    Each epoch adds its own task; the bar is transient-free so the finished epochs
    stay on screen as a compact log.
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )
    with progress:
        yield progress
