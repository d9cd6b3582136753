"""The train/validation/test splits of an ImageFolder directory for fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, random_split
from torchvision import datasets

__all__ = ["image_folder_splits"]


def image_folder_splits(
    root: Path, seed: int, train_tf: Any, eval_tf: Any
) -> tuple[Dataset, Dataset, Dataset | None, list[str]]:
    """train/, val/ and optional test/ under ``root``; without train/, a seeded 90/10 split."""
    if (root / "train").is_dir():
        train = datasets.ImageFolder(root / "train", transform=train_tf)
        val_dir = root / "val" if (root / "val").is_dir() else root / "validation"
        val = datasets.ImageFolder(val_dir, transform=eval_tf)
        if val.classes != train.classes:
            raise ValueError(
                f"{val_dir} has classes {val.classes}, {root / 'train'} has {train.classes}."
            )
        test = (
            datasets.ImageFolder(root / "test", transform=eval_tf)
            if (root / "test").is_dir()
            else None
        )
        return train, val, test, train.classes
    full_train = datasets.ImageFolder(root, transform=train_tf)
    full_eval = datasets.ImageFolder(root, transform=eval_tf)
    n_val = max(1, len(full_train) // 10)
    rng = torch.Generator().manual_seed(seed)
    train_part, val_part = random_split(
        range(len(full_train)), [len(full_train) - n_val, n_val], generator=rng
    )
    train = Subset(full_train, list(train_part))
    val = Subset(full_eval, list(val_part))
    return train, val, None, full_train.classes
