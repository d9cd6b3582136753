"""The heads after the forward: classification top-k and generation, for every protocol.

v1, v2 REST and gRPC rank classes here, with one tie rule (the lower class index first), so the
same probabilities give the same labels in the same order whichever protocol asked. The ranking
runs on the event loop without torch: a torch call there would give up the GIL to the forward
worker and then wait to win it back, which cost more than the ranking itself. Ten classes are
sorted as a Python list (about 2 us; numpy's calls cost more than the work at that size), a
thousand with numpy.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from math import inf

import numpy as np
import torch

from app.serving.outputs import Generation, Output, Prediction
from app.serving.runtime import ModelRuntime

FEW_CLASSES = 64  # up to this many, Python's sort of a list beats numpy's per-call cost


def top_indices(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest scores, largest first (ties: lower index first; NaN last)."""
    if scores.shape[0] <= FEW_CLASSES:
        values = scores.tolist()
        # a stable sort keeps equal scores in index order; NaN (not equal to itself) sorts last
        return sorted(
            range(len(values)), key=lambda i: -values[i] if values[i] == values[i] else inf
        )[:k]
    candidates = np.arange(scores.shape[0])
    if k < scores.shape[0]:
        kth = -np.partition(-scores, k - 1)[k - 1]  # the k-th largest; NaN when too few numbers
        if kth == kth:  # every score tied with it stays a candidate: the lower indices win
            candidates = np.flatnonzero(scores >= kth)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return candidates[order].tolist()


def rank(rows: Sequence[np.ndarray], labels: Sequence[str], k: int) -> list[list[Prediction]]:
    """The top ``k`` classes of each row of probabilities, most probable first."""
    ranked = []
    for probabilities in rows:
        top = top_indices(probabilities, k)
        chosen = probabilities[top].tolist()
        ranked.append([Prediction(i, labels[i], p) for i, p in zip(top, chosen, strict=True)])
    return ranked


def oldest_version(outputs: Sequence[Output]) -> int:
    """The parameter version to report for outputs that may span a swap: the older one."""
    return min(output.version for output in outputs)


async def classify(
    runtime: ModelRuntime, samples: Sequence[torch.Tensor], top_k: int
) -> tuple[list[list[Prediction]], int]:
    """Top-k labels per sample (probabilities descending) and the parameter version used."""
    outputs = await runtime.infer([(sample,) for sample in samples])
    labels = runtime.labels
    rows = [output.tensor.numpy() for output in outputs]
    return rank(rows, labels, min(top_k, len(labels))), oldest_version(outputs)


def _image(output: torch.Tensor) -> np.ndarray:
    """A generator output in [-1, 1] as 8-bit greyscale pixels."""
    return (
        ((output.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).reshape(output.shape[-2:])
    ).numpy()


async def generate(
    runtime: ModelRuntime, n: int, label: int | None, seed: int | None
) -> Generation:
    """``n`` images of class ``label`` (or cycling through the classes), from seeded latents:
    the same seed and label give the same images."""
    seed = seed if seed is not None else secrets.randbits(63)
    latent = torch.randn(n, runtime.spec.latent_size, generator=torch.Generator().manual_seed(seed))
    classes = max(1, len(runtime.labels))
    labels = [label if label is not None else i % classes for i in range(n)]
    targets = torch.tensor(labels, dtype=torch.long)
    outputs = await runtime.infer(list(zip(latent.unbind(0), targets.unbind(0), strict=True)))
    images = [_image(output.tensor) for output in outputs]
    return Generation(images, labels, seed, oldest_version(outputs))
