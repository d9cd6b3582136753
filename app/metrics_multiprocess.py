"""One ``/metrics`` for every worker process: prometheus_client's multiprocess mode.

Each worker writes its samples to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and a
scrape, whichever worker answers it, merges them all (app/metrics.py). That variable is
prometheus_client's own switch, read when it is first imported, so it is set here in the
environment the workers inherit; our settings are still read only in app/config.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_metrics(workers: int) -> Iterator[Path | None]:
    """For the parent process, around starting ``workers`` worker processes: a fresh, empty
    samples directory in ``PROMETHEUS_MULTIPROC_DIR``, removed (with the variable) on exit.

    One worker needs none (None is yielded). A directory the user set is used as it is: it
    must be empty at start, or the scrapes count the samples of an earlier run too.
    """
    if workers <= 1 or MULTIPROC_DIR_VARIABLE in os.environ:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="torchgate-metrics-") as directory:
        os.environ[MULTIPROC_DIR_VARIABLE] = directory
        try:
            yield Path(directory)
        finally:
            os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
