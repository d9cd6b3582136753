"""The folder of compiled graph packages (``.pt2``), one file per key.

A key names everything a package depends on: the model, the device (and the CPU's vector
instruction set or the GPU's compute capability), the torch version, the sha256 of the weights
it was compiled with and the graph options. Weights can be baked into a package, so a package
is never used for other weights. Packages are written to a temporary file in the same folder
and renamed into place, so workers and replicas sharing the folder never read half a file.
The folder must be writable by the service alone: loading a package loads a shared library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PACKAGE_SUFFIX = ".pt2"
STALE_TMP_S = 3600.0  # a compile takes minutes; an older temporary file lost its process


def device_signature(device: torch.device) -> str:
    """What compiled code for ``device`` depends on beyond its type: a package built for
    AVX-512 (or one GPU generation) must not be loaded on a host without it."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda-sm{major}{minor}"
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return f"cpu-{pick_vec_isa() or 'scalar'}"


@dataclass(frozen=True)
class PackageKey:
    model: str
    device: str
    torch_version: str
    weights_sha256: str
    options: str

    @classmethod
    def for_model(
        cls, model: str, device: torch.device, weights_sha256: str, options: str
    ) -> PackageKey:
        return cls(model, device_signature(device), torch.__version__, weights_sha256, options)

    @property
    def filename(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{self.model}-{digest[:32]}{PACKAGE_SUFFIX}"


class PackageCache:
    """Finds and stores packages by key; a missing folder is created on the first store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: PackageKey) -> Path:
        return self.directory / key.filename

    def find(self, key: PackageKey) -> Path | None:
        path = self.path(key)
        return path if path.is_file() else None

    @contextlib.contextmanager
    def compiling(self, key: PackageKey) -> Iterator[None]:
        """Held while ``key`` is compiled: the workers of one host (or replicas sharing the
        folder over a filesystem with locks) compile a package once and the others wait for
        it instead of compiling it again."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f".{key.filename}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def store(self, key: PackageKey, write: Callable[[Path], None]) -> Path:
        """Run ``write(tmp_path)`` and rename the result into place (atomic on one filesystem);
        a failed write leaves nothing behind."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tmp()
        final = self.path(key)
        handle, name = tempfile.mkstemp(
            prefix=f".{key.model}-", suffix=f".tmp{PACKAGE_SUFFIX}", dir=self.directory
        )
        os.close(handle)
        tmp = Path(name)
        try:
            write(tmp)
            tmp.chmod(0o644)  # mkstemp's 0600 would hide it from workers running as another user
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.info("stored compiled graph %s (%s)", final, key)
        return final

    def _remove_stale_tmp(self) -> None:
        """Temporary files left by a process killed while it compiled."""
        cutoff = time.time() - STALE_TMP_S
        for path in self.directory.glob(f".*.tmp{PACKAGE_SUFFIX}"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
