"""The control store of one ``serve`` run, when ``TORCHGATE_STATE_URL`` is unset.

Each run is its own service: its workers share a SQLite file under ``<data_dir>/state`` (or
this user's ``torchgate-state-<uid>`` in the temp dir), a folder of mode 0700, that is removed
when the run ends, so a restart starts from the weights' sources as before and two servers
started from one checkout never mix their parameters. To share state across containers or
restarts, set ``TORCHGATE_STATE_URL`` explicitly.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from app.config import Settings
from app.errors import ConfigurationError

logger = logging.getLogger(__name__)
ENV = "TORCHGATE_STATE_URL"


def _state_folder(data_dir: Path) -> Path:
    """``<data_dir>/state``, or where the data dir is read-only, this user's folder in the
    temp dir (``torchgate-state-<uid>``, under every user's /tmp): made with mode 0700, and
    refused where someone else may have been in it (ConfigurationError)."""
    yours = Path(tempfile.gettempdir()) / f"torchgate-state-{os.geteuid()}"
    for folder, shared_parent in ((data_dir / "state", False), (yours, True)):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.lstat()
        except OSError:
            continue
        _check_private(folder, info, shared_parent)
        if os.access(folder, os.W_OK):
            return folder.resolve()
    raise OSError(f"no writable folder for the control store under {data_dir} or the temp dir")


def _check_private(folder: Path, info: os.stat_result, shared_parent: bool) -> None:
    """Whoever can write the store changes every worker's parameters: the folder must be this
    user's alone. One an older torchgate left under the data dir (0755) is tightened."""
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder (a link or a file)"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    elif mode & 0o077 and not shared_parent and not mode & 0o022:
        with suppress(OSError):  # read-only: then it is not used either
            folder.chmod(0o700)
        return
    elif mode & 0o077:
        problem = f"is open to other users (mode {mode:o})"
    else:
        return
    raise ConfigurationError(
        f"the control store's folder {folder} {problem}; whoever can write it can change the "
        f"models. Remove it (or chmod 700 a folder of yours), or set {ENV}."
    )


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
