"""In-memory Fashion-MNIST/MNIST tensors, the seeded train/validation split and augmentation.

Holding the 60,000 images as one float tensor and slicing batches from it is several
times faster on a CPU than a DataLoader that converts every item through PIL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from app.datasets import load_tensors, train_val_indices

__all__ = ["SplitData", "augment", "batches", "erase", "load_split_data", "num_batches"]

VAL_SIZE = 6_000


@dataclass(frozen=True)
class SplitData:
    """Normalized images [N, 1, 28, 28] and labels [N] for train, validation and test."""

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]


def load_split_data(dataset: str, data_dir: Path, seed: int, limit: int | None = None) -> SplitData:
    """Split the training set 54,000/6,000 with ``seed``; the test split stays untouched.

    ``limit`` keeps only the first ``limit`` shuffled training images and a
    proportional validation share (at least 100), for quick runs.
    """
    images, labels = load_tensors(dataset, "train", data_dir)
    train_idx, val_idx = train_val_indices(labels.numel(), VAL_SIZE, seed)
    if limit is not None:
        train_idx = train_idx[:limit]
        val_idx = val_idx[: max(100, limit * VAL_SIZE // (labels.numel() - VAL_SIZE))]
    return SplitData(
        train=(images[train_idx], labels[train_idx]),
        val=(images[val_idx], labels[val_idx]),
        test=load_tensors(dataset, "test", data_dir),
    )


def num_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`batches` yields for ``n`` items."""
    return max(1, n // batch_size)


def batches(
    images: Tensor, labels: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled mini-batches; the last short one is dropped so BatchNorm never sees one image."""
    order = torch.randperm(labels.numel(), generator=generator)
    size = min(batch_size, labels.numel())
    for i in range(num_batches(labels.numel(), batch_size)):
        idx = order[i * size : (i + 1) * size]
        yield images[idx], labels[idx]


def augment(
    images: Tensor, generator: torch.Generator, flip: bool = True, shift: int = 2
) -> Tensor:
    """Random horizontal flips and translations of up to ``shift`` pixels, per image.

    Garments keep their class when mirrored and digits do not, hence ``flip``. The
    padded border is the image minimum so the normalized background stays background.
    """
    n, _, h, w = images.shape
    if flip:
        mirrored = torch.rand(n, generator=generator) < 0.5
        images = torch.where(mirrored[:, None, None, None], images.flip(3), images)
    if shift == 0:
        return images
    padded = F.pad(images, (shift,) * 4, value=float(images.min()))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def erase(
    images: Tensor,
    generator: torch.Generator,
    p: float,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> Tensor:
    """Random erasing (Zhong et al., 2017), per image: with probability ``p`` a rectangle of
    ``scale`` of the area and aspect ``ratio`` is set to 0, the dataset mean once normalized.

    torchvision's RandomErasing draws one rectangle per call (one per batch on a batched
    tensor) from the global RNG; this draws one per image from ``generator``, so a seeded run
    repeats, and clips a rectangle that would not fit instead of drawing again.
    """
    if p <= 0:
        return images
    n, _, h, w = images.shape
    area = torch.empty(n).uniform_(*scale, generator=generator) * (h * w)
    aspect = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    eh = (area * aspect.exp()).sqrt().round().clamp(1, h).long()
    ew = (area / aspect.exp()).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - ew + 1)).long()
    chosen = torch.rand(n, generator=generator) < p
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
    return images.masked_fill(mask[:, None], 0.0)
