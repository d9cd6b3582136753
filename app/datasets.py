"""Fashion-MNIST and MNIST through torchvision, fed from local files first.

torchvision reads the uncompressed IDX files from ``<root>/<Class>/raw/`` and its
``download=True`` checks md5 sums that Debian's recompressed ``.gz`` files do not
match, so local ``.gz`` files are unpacked into that cache before the dataset is built
and the network is only tried when nothing is found on disk.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torchvision import datasets

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "DatasetNotFound",
    "Split",
    "class_names",
    "load_split",
    "load_tensors",
    "normalize",
    "train_val_indices",
]

log = logging.getLogger(__name__)

Split = Literal["train", "test"]


class _OneSplitMixin:
    """Let a torchvision MNIST-family dataset open with only its own split on disk.

    torchvision's ``_check_exists`` wants all four files even when one split is
    asked for; the repository ships the test split alone.
    """

    root: str | Path
    train: bool
    _base: type[datasets.MNIST]

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, self._base.__name__, "raw")

    def _check_exists(self) -> bool:
        return all(os.path.isfile(os.path.join(self.raw_folder, f)) for f in _files(self.train))


class _FashionMNIST(_OneSplitMixin, datasets.FashionMNIST):
    _base = datasets.FashionMNIST


class _MNIST(_OneSplitMixin, datasets.MNIST):
    _base = datasets.MNIST


@dataclass(frozen=True)
class _Source:
    cls: type[_FashionMNIST] | type[_MNIST]
    folder: str  # <data_dir>/<folder>/ holds the .gz files as distributed
    debian: Path  # where the Debian package installs them
    package: str

    @property
    def cache(self) -> str:
        """torchvision's own folder name: <data_dir>/<cache>/raw/."""
        return self.cls._base.__name__


DATASETS: dict[str, _Source] = {
    "fashion-mnist": _Source(
        _FashionMNIST,
        "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
        "dataset-fashion-mnist",
    ),
    "mnist": _Source(_MNIST, "mnist", Path("/usr/share/datasets/mnist"), "dataset-mnist"),
}

# Per-dataset pixel mean/std of the training split (images scaled to [0, 1]).
NORMALIZATION: dict[str, tuple[float, float]] = {
    "fashion-mnist": (0.2860, 0.3530),
    "mnist": (0.1307, 0.3081),
}


class DatasetNotFound(FileNotFoundError):
    """The dataset files are neither on disk nor downloadable."""


def _files(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _spec(name: str) -> _Source:
    try:
        return DATASETS[name]
    except KeyError:
        valid = ", ".join(sorted(DATASETS))
        raise ValueError(f"Unknown dataset {name!r}; choose one of: {valid}.") from None


def class_names(name: str) -> list[str]:
    """The label names, in index order, as torchvision defines them."""
    return list(_spec(name).cls.classes)


def _search_dirs(name: str, data_dir: Path) -> list[Path]:
    spec = _spec(name)
    return [data_dir / spec.folder, data_dir / spec.cache / "raw", spec.debian]


def _stage(name: str, train: bool, data_dir: Path) -> bool:
    """Unpack the split's files into torchvision's raw cache; True when they are there."""
    raw = data_dir / _spec(name).cache / "raw"
    wanted = _files(train)
    if all((raw / f).is_file() for f in wanted):
        return True
    for directory in _search_dirs(name, data_dir):
        sources = [_source(directory, f) for f in wanted]
        if all(s is not None for s in sources):
            raw.mkdir(parents=True, exist_ok=True)
            for src, target in zip(sources, wanted, strict=True):
                assert src is not None
                _copy_plain(src, raw / target)
            log.info("Unpacked %s %s split from %s into %s", name, _split(train), directory, raw)
            return True
    return False


def _source(directory: Path, filename: str) -> Path | None:
    for candidate in (directory / f"{filename}.gz", directory / filename):
        if candidate.is_file():
            return candidate
    return None


def _copy_plain(src: Path, dst: Path) -> None:
    """Write ``src`` uncompressed to ``dst`` atomically, so a crash leaves no half file."""
    if src.resolve() == dst.resolve():
        return
    tmp = dst.with_suffix(".partial")
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    tmp.replace(dst)


def _split(train: bool) -> str:
    return "train" if train else "test"


def load_split(name: str, split: Split, data_dir: Path | str = "data") -> datasets.MNIST:
    """The torchvision dataset for one split, from local files or, failing that, a download."""
    spec = _spec(name)
    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}; choose 'train' or 'test'.")
    train = split == "train"
    data_dir = Path(data_dir)
    if _stage(name, train, data_dir):
        return spec.cls(str(data_dir), train=train, download=False)
    try:
        log.info("No local %s files; downloading into %s", name, data_dir)
        return spec.cls(str(data_dir), train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError or URLError offline
        files = ", ".join(f"{f}.gz" for f in _files(train))
        raise DatasetNotFound(
            f"The {name} {split} split was not found and could not be downloaded ({exc}). "
            f"Put {files} in {data_dir / spec.folder} or install them with "
            f"`apt-get install -y {spec.package}` (into {spec.debian})."
        ) from exc


def normalize(images: Tensor, name: str) -> Tensor:
    """Scale uint8 or [0, 1] images to the dataset's zero-mean, unit-std input."""
    mean, std = NORMALIZATION[name]
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    return (x - mean) / std


def load_tensors(name: str, split: Split, data_dir: Path | str = "data") -> tuple[Tensor, Tensor]:
    """The whole split as normalized float images [N, 1, 28, 28] and long labels [N].

    Reading ``.data``/``.targets`` directly skips per-item PIL conversion, which is
    what makes full-split evaluation and training on two CPU cores fast.
    """
    ds = load_split(name, split, data_dir)
    return normalize(ds.data.unsqueeze(1), name), ds.targets.long()


def train_val_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded, reproducible split of ``range(n)`` into train and validation indices."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1}, got {val_size}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]
