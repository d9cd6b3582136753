"""A precision candidate against the float32 baseline: accuracy (or agreement), per class, and
images per second, both run on the same batches in turn.

Plain callables again (``forward`` maps a batch to logits), so the caller decides devices and
copies. The first batch is run once by each side before timing starts (oneDNN and cuDNN set
up their kernels on a first call), and only the forwards are timed, never the decoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["compare_classifiers", "compare_generators", "judge"]

Forward = Callable[..., Tensor]
Progress = Callable[[int, int], None]


@dataclass
class _Side:
    """One model's running counts: correct per class, predictions kept for agreement."""

    forward: Forward
    num_classes: int
    seconds: float = 0.0
    images: int = 0
    correct: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.correct = torch.zeros(self.num_classes, dtype=torch.long)

    def run(self, *inputs: Tensor) -> Tensor:
        started = time.perf_counter()
        outputs = self.forward(*inputs)
        self.seconds += time.perf_counter() - started
        self.images += inputs[0].shape[0]
        return outputs

    def tally(self, predicted: Tensor, labels: Tensor) -> None:
        hit = predicted == labels
        self.correct += torch.bincount(labels[hit], minlength=self.num_classes)

    def result(self, totals: Tensor | None, metric: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "images_per_second": round(self.images / self.seconds, 2) if self.seconds else None
        }
        if totals is not None:
            n = int(totals.sum())
            out[metric] = int(self.correct.sum()) / n
            out[f"per_class_{metric}"] = [
                (c / t if t else None)
                for c, t in zip(self.correct.tolist(), totals.tolist(), strict=True)
            ]
        return out


def _warm(side: _Side, *inputs: Tensor) -> None:
    side.forward(*(t[:8] for t in inputs))


def judge(
    baseline: dict[str, Any], candidate: dict[str, Any], metric: str, max_drop: float, n: int
) -> tuple[bool, float, str]:
    """(promoted, drop, reason): the candidate passes when its ``metric`` is at most
    ``max_drop`` below the baseline's (a tolerance of 0 refuses any drop). Counted in whole
    samples, so float rounding cannot turn an equal score into a drop."""
    hits_base, hits_cand = round(baseline[metric] * n), round(candidate[metric] * n)
    drop = (hits_base - hits_cand) / n
    if hits_base - hits_cand <= max_drop * n + 1e-9:
        verb = "rose" if drop < 0 else "dropped"
        return True, drop, f"{metric} {verb} by {abs(drop):.4f}, within {max_drop:g}"
    return False, drop, f"{metric} dropped by {drop:.4f} ({n} samples), more than {max_drop:g}"


@torch.inference_mode()
def compare_classifiers(
    baseline: Forward,
    candidate: Forward,
    batches: Iterable[tuple[Tensor, Tensor | None]],
    num_classes: int,
    total: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Both forwards on every batch (labels None: an unlabelled set). Returns ``n``, the
    ``metric`` ("accuracy", or "agreement" without labels), each side's score, per-class
    scores and images/s, and ``agreement``: the share of inputs whose top-1 matches."""
    base, cand = _Side(baseline, num_classes), _Side(candidate, num_classes)
    totals = torch.zeros(num_classes, dtype=torch.long)
    agree = n = 0
    labelled = True
    for inputs, labels in batches:
        if n == 0:
            _warm(base, inputs)
            _warm(cand, inputs)
        predicted_base = base.run(inputs).float().argmax(dim=1).cpu()
        predicted_cand = cand.run(inputs).float().argmax(dim=1).cpu()
        agree += int((predicted_base == predicted_cand).sum())
        n += inputs.shape[0]
        if labels is None:
            labelled = False
        else:
            labels = labels.long().cpu()
            totals += torch.bincount(labels, minlength=num_classes)
            base.tally(predicted_base, labels)
            cand.tally(predicted_cand, labels)
        if progress is not None:
            progress(min(n, total), max(total, n))
    if n == 0:
        raise ValueError("Nothing to compare: the inputs are empty.")
    if not labelled:
        return _agreement_only(base, cand, agree, n)
    return _comparison("accuracy", base.result(totals, "accuracy"), cand, totals, agree, n)


def _comparison(
    metric: str,
    baseline: dict[str, Any],
    cand: _Side,
    totals: Tensor,
    agree: int,
    n: int,
) -> dict[str, Any]:
    candidate = cand.result(totals, metric)
    return {
        "n": n,
        "metric": metric,
        "baseline": baseline,
        "candidate": candidate,
        "agreement": agree / n,
        "throughput_ratio": _ratio(candidate, baseline),
    }


def _agreement_only(base: _Side, cand: _Side, agree: int, n: int) -> dict[str, Any]:
    """Without labels the score is top-1 agreement with float32 (float32 agrees with itself)."""
    baseline, candidate = base.result(None, ""), cand.result(None, "")
    baseline["agreement"], candidate["agreement"] = 1.0, agree / n
    return {
        "n": n,
        "metric": "agreement",
        "note": "no labelled set: the candidate is judged by top-1 agreement with float32 on "
        "the inputs given, not by accuracy",
        "baseline": baseline,
        "candidate": candidate,
        "agreement": agree / n,
        "throughput_ratio": _ratio(candidate, baseline),
    }


def _ratio(candidate: dict[str, Any], baseline: dict[str, Any]) -> float | None:
    fast, slow = candidate["images_per_second"], baseline["images_per_second"]
    return round(fast / slow, 3) if fast and slow else None


@torch.inference_mode()
def compare_generators(
    baseline: Forward,
    candidate: Forward,
    classify: Forward,
    per_class: int,
    seed: int,
    num_classes: int,
    z_dim: int,
    normalization: tuple[float, float],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A generator judged by an independent classifier: the share of each one's images that
    ``classify`` assigns to the requested class (``consistency``, as the GAN's evaluation),
    on the same latents; ``agreement``: the share whose judged class is the same for both."""
    mean, std = normalization
    rng = torch.Generator().manual_seed(seed)
    base, cand = _Side(baseline, num_classes), _Side(candidate, num_classes)
    totals = torch.zeros(num_classes, dtype=torch.long)
    agree = 0
    for c in range(num_classes):
        z = torch.randn(per_class, z_dim, generator=rng)
        labels = torch.full((per_class,), c, dtype=torch.long)
        if c == 0:
            _warm(base, z, labels)
            _warm(cand, z, labels)
        judged = [
            classify(((side.run(z, labels).float().cpu() + 1) / 2 - mean) / std).argmax(dim=1)
            for side in (base, cand)
        ]
        totals[c] += per_class
        base.tally(judged[0].cpu(), labels)
        cand.tally(judged[1].cpu(), labels)
        agree += int((judged[0] == judged[1]).sum())
        if progress is not None:
            progress(c + 1, num_classes)
    n = per_class * num_classes
    return _comparison("consistency", base.result(totals, "consistency"), cand, totals, agree, n)
