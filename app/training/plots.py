"""Training curves, GAN sample grids and the GAN judge's figures as PNG files (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

__all__ = ["plot_curves", "plot_grid", "plot_judge", "plot_samples"]


def plot_curves(history: dict[str, list[float | None]], path: Path, title: str) -> None:
    """Loss on the left, accuracy-like scores on the right, one point per epoch.

    Keys ending in ``loss`` go to the left panel, every other key except ``lr`` to
    the right; None entries (e.g. no training loss before epoch 1) are skipped.
    """
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    for key, values in history.items():
        if key == "lr":
            continue
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        if not points:
            continue
        ax = ax_loss if key.endswith("loss") else ax_score
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key)
    for ax, label in ((ax_loss, "loss"), (ax_score, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(images: Tensor, class_names: list[str], path: Path) -> None:
    """A grid with one row per class; ``images`` is [classes * per_row, 1, 28, 28] in [-1, 1]."""
    rows = len(class_names)
    cols = images.shape[0] // rows
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8 + 1.6, rows * 0.8), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[r * cols + c, 0].cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(class_names[r], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.inference_mode()
def plot_grid(gen: nn.Module, names: list[str], z_dim: int, path: Path, per_row: int = 10) -> None:
    """``per_row`` samples of each class from the generator, on fixed noise (seed 0)."""
    rng = torch.Generator().manual_seed(0)
    labels = torch.arange(len(names)).repeat_interleave(per_row)
    z = torch.randn(labels.numel(), z_dim, generator=rng)
    plot_samples(gen.eval()(z, labels), names, path)


def plot_judge(
    class_names: list[str],
    consistency: list[float],
    served_consistency: list[float] | None,
    generated: list[float],
    real: list[float],
    path: Path,
) -> None:
    """Per-class bars: consistency by the independent judge (and by the served cnn, when
    known) with the 0.8 floor, and the diversity of generated against real images."""
    fig, (ax_c, ax_d) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(class_names))
    width = 0.4
    bars = [("independent judge", consistency)]
    if served_consistency is not None:
        bars.append(("served cnn", served_consistency))
    for i, (label, values) in enumerate(bars):
        ax_c.bar([j + (i - 0.5) * width for j in x], values, width, label=label)
    ax_c.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    ax_c.set_ylim(0, 1.05)
    ax_c.set_title("class consistency")
    for i, (label, values) in enumerate((("generated", generated), ("real (test)", real))):
        ax_d.bar([j + (i - 0.5) * width for j in x], values, width, label=label)
    ax_d.set_title("diversity: mean pairwise feature distance")
    for ax in (ax_c, ax_d):
        ax.set_xticks(list(x), class_names, rotation=45, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
