"""Accuracy, confusion matrix and GAN class consistency, shared by the admin API and the CLI.

The functions take plain callables (``forward`` maps a float batch to logits) so the
caller decides device, dtype and locking; batches are sliced from the inputs as given
and the returned logits are moved to the CPU for the statistics. Results are plain
dicts of floats/ints/lists, ready to be serialized as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from app.datasets import NORMALIZATION

__all__ = ["evaluate_classifier", "evaluate_gan_consistency", "evaluate_loader"]

Forward = Callable[[Tensor], Tensor]
Progress = Callable[[int, int], None]


class _Tally:
    """Running sums over batches of (logits, labels); finishes into a result dict."""

    def __init__(
        self, num_classes: int, confusion: bool, subset: Sequence[int] | None = None
    ) -> None:
        self.num_classes = num_classes
        self.n = 0
        self.loss_sum = 0.0
        self.top1 = 0
        self.top5 = 0
        self.per_class_total = torch.zeros(num_classes, dtype=torch.long)
        self.per_class_correct = torch.zeros(num_classes, dtype=torch.long)
        self.confusion = (
            torch.zeros(num_classes, num_classes, dtype=torch.long) if confusion else None
        )
        self.subset = torch.tensor(sorted(set(subset))) if subset is not None else None
        self.subset_top1 = 0
        self.subset_top5 = 0
        self.per_class_subset_correct = torch.zeros(num_classes, dtype=torch.long)

    def update(self, logits: Tensor, labels: Tensor) -> None:
        logits, labels = logits.detach().float().cpu(), labels.cpu().long()
        if logits.shape != (labels.shape[0], self.num_classes):
            raise ValueError(
                f"forward returned logits of shape {tuple(logits.shape)}; "
                f"expected ({labels.shape[0]}, {self.num_classes})."
            )
        pred = logits.argmax(dim=1)
        hit = pred == labels
        self.n += labels.numel()
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        self.top1 += int(hit.sum())
        if self.num_classes > 5:
            top5 = logits.topk(5, dim=1).indices
            self.top5 += int((top5 == labels[:, None]).any(dim=1).sum())
        self.per_class_total += torch.bincount(labels, minlength=self.num_classes)
        self.per_class_correct += torch.bincount(labels[hit], minlength=self.num_classes)
        if self.confusion is not None:
            flat = labels * self.num_classes + pred
            self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view(
                self.num_classes, self.num_classes
            )
        if self.subset is not None:
            self._update_subset(logits, labels)

    def _update_subset(self, logits: Tensor, labels: Tensor) -> None:
        """The prediction restricted to the subset's classes: ranks over their logits only."""
        assert self.subset is not None
        k = min(5, len(self.subset))
        ranked = self.subset[logits[:, self.subset].topk(k, dim=1).indices]
        hit = ranked[:, 0] == labels
        self.subset_top1 += int(hit.sum())
        self.subset_top5 += int((ranked == labels[:, None]).any(dim=1).sum())
        self.per_class_subset_correct += torch.bincount(labels[hit], minlength=self.num_classes)

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            raise ValueError("Nothing to evaluate: the inputs are empty.")
        per_class = [
            (c / t if t else None)
            for c, t in zip(
                self.per_class_correct.tolist(), self.per_class_total.tolist(), strict=True
            )
        ]
        out: dict[str, Any] = {
            "n": self.n,
            "accuracy": self.top1 / self.n,
            "loss": self.loss_sum / self.n,
            "per_class_accuracy": per_class,
        }
        if self.num_classes > 5:
            out["top5"] = self.top5 / self.n
        if self.confusion is not None:
            out["confusion_matrix"] = self.confusion.tolist()
        if self.subset is not None:
            out.update(self._subset_result())
        return out

    def _subset_result(self) -> dict[str, Any]:
        assert self.subset is not None
        out: dict[str, Any] = {"subset_top1": self.subset_top1 / self.n}
        if len(self.subset) > 5:
            out["subset_top5"] = self.subset_top5 / self.n
        totals = self.per_class_total.tolist()
        correct = self.per_class_correct.tolist()
        subset_correct = self.per_class_subset_correct.tolist()
        out["subset_per_class"] = [
            {
                "index": c,
                "n": totals[c],
                "top1": correct[c] / totals[c] if totals[c] else None,
                "subset_top1": subset_correct[c] / totals[c] if totals[c] else None,
            }
            for c in self.subset.tolist()
        ]
        return out


@torch.inference_mode()
def evaluate_classifier(
    forward: Forward,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate ``forward`` on in-memory inputs.

    Returns ``n``, ``accuracy``, ``top5`` (only when num_classes > 5), mean
    cross-entropy ``loss``, ``per_class_accuracy`` (None for a class with no
    samples) and ``confusion_matrix`` (rows: true class, columns: predicted).
    ``progress(done, total)`` is called after every batch.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} inputs but {labels.shape[0]} labels.")
    tally = _Tally(num_classes, confusion=True)
    total = labels.shape[0]
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        tally.update(forward(images[start:stop]), labels[start:stop])
        if progress is not None:
            progress(stop, total)
    return tally.result()


@torch.inference_mode()
def evaluate_loader(
    forward: Forward,
    loader: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    total: int | None = None,
    progress: Progress | None = None,
    confusion: bool = False,
    subset: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Evaluate ``forward`` over (images, labels) batches, e.g. a DataLoader on an ImageFolder.

    Same keys as :func:`evaluate_classifier`; the confusion matrix is off by default
    because for 1,000 ImageNet classes it has a million entries. ``total`` defaults
    to ``len(loader.dataset)`` when the loader has one. With ``subset`` (class indices that
    include every label), the prediction is also ranked over those classes' logits only:
    ``subset_top1``, ``subset_top5`` (more than 5 classes) and ``subset_per_class``
    (index, n, top1, subset_top1 per subset class).
    """
    if total is None:
        dataset = getattr(loader, "dataset", None)
        total = len(dataset) if dataset is not None else 0  # type: ignore[arg-type]
    tally = _Tally(num_classes, confusion=confusion, subset=subset)
    for images, labels in loader:
        tally.update(forward(images), labels)
        if progress is not None:
            progress(tally.n, max(total, tally.n))
    return tally.result()


@torch.inference_mode()
def evaluate_gan_consistency(
    generate: Callable[[Tensor, Tensor], Tensor],
    classify: Forward,
    per_class: int = 100,
    seed: int = 0,
    num_classes: int = 10,
    z_dim: int = 100,
    normalization: tuple[float, float] = NORMALIZATION["fashion-mnist"],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Share of generated images that the classifier assigns to the requested class.

    ``generate(z, labels)`` returns images in [-1, 1] (tanh output), while ``classify``
    expects the dataset's normalized input, so each batch is mapped to [0, 1] by
    ``(x + 1) / 2`` and then normalized with ``normalization`` = (mean, std). The
    noise comes from a generator seeded with ``seed``, so the score is reproducible.
    Returns ``n``, overall ``consistency``, ``per_class`` shares, ``classes_produced``
    (how many classes got at least one image classified as themselves),
    ``all_classes_produced`` and the ``confusion_matrix`` (requested x predicted).
    """
    mean, std = normalization
    rng = torch.Generator().manual_seed(seed)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for c in range(num_classes):
        z = torch.randn(per_class, z_dim, generator=rng)
        labels = torch.full((per_class,), c, dtype=torch.long)
        images = generate(z, labels)
        logits = classify(((images + 1) / 2 - mean) / std)
        pred = logits.detach().argmax(dim=1).cpu()
        confusion[c] += torch.bincount(pred, minlength=num_classes)
        if progress is not None:
            progress(c + 1, num_classes)
    hits = confusion.diagonal()
    per_class_share = (hits.float() / per_class).tolist()
    produced = int((hits > 0).sum())
    return {
        "n": per_class * num_classes,
        "consistency": hits.sum().item() / (per_class * num_classes),
        "per_class": per_class_share,
        "classes_produced": produced,
        "all_classes_produced": produced == num_classes,
        "confusion_matrix": confusion.tolist(),
    }
