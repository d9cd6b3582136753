"""The control store of one ``serve`` run, when ``TORCHGATE_STATE_URL`` is unset.

Each run is its own service: its workers share a SQLite file under ``<data_dir>/state`` that
is removed when the run ends, so a restart starts from the weights' sources as before and two
servers started from one checkout never mix their parameters. To share state across
containers or restarts, set ``TORCHGATE_STATE_URL`` explicitly.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from app.config import Settings

logger = logging.getLogger(__name__)
ENV = "TORCHGATE_STATE_URL"


def _state_folder(data_dir: Path) -> Path:
    """``<data_dir>/state``, or a temporary folder where the data dir is read-only."""
    for folder in (data_dir / "state", Path(tempfile.gettempdir()) / "torchgate-state"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder.resolve()
        except OSError:
            continue
    raise OSError(f"no writable folder for the control store under {data_dir} or the temp dir")


@contextmanager
def run_scoped_store(settings: Settings) -> Iterator[str]:
    """Give this run (and the worker processes it starts) a store URL; yields it."""
    if settings.state_url:
        yield settings.state_url
        return
    path = _state_folder(settings.data_dir) / f"serve-{uuid.uuid4().hex[:12]}.sqlite3"
    url = f"sqlite:///{path}"
    os.environ[ENV] = url  # read by the workers' Settings
    logger.info("control store for this run: %s", url)
    try:
        yield url
    finally:
        os.environ.pop(ENV, None)
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with suppress(FileNotFoundError):
                leftover.unlink()
