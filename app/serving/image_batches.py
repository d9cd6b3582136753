"""An image folder's samples as batches of tensors for an evaluation: each batch is decoded in
a thread while the model runs the one before, never more than two held at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from app.errors import InvalidInput, TorchgateError
from app.serving.images import decode_image

IMAGEFOLDER_BATCH = 32
SKIPPED_SHOWN = 5


def image_batches(
    samples: list[tuple[str, int]],
    transform: Callable[..., torch.Tensor],
    max_pixels: int,
    skipped: list[str],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Decode the next batch in a thread while the model runs this one, never holding more
    than two; an image that does not decode is appended to ``skipped`` instead."""

    def load(chunk: list[tuple[str, int]]) -> tuple[list[torch.Tensor], list[int]]:
        images, labels = [], []
        for path, target in chunk:
            try:
                image = decode_image(Path(path).read_bytes(), max_pixels)
            except (TorchgateError, OSError):
                skipped.append(path)
                continue
            images.append(transform(image))
            labels.append(target)
        return images, labels

    chunks = [
        samples[start : start + IMAGEFOLDER_BATCH]
        for start in range(0, len(samples), IMAGEFOLDER_BATCH)
    ]
    decoded = 0
    with ThreadPoolExecutor(1, thread_name_prefix="evaluation-decode") as pool:
        pending: Future[tuple[list[torch.Tensor], list[int]]] = pool.submit(load, chunks[0])
        for following in [*chunks[1:], None]:
            images, labels = pending.result()
            if following is not None:
                pending = pool.submit(load, following)
            if labels:
                decoded += len(labels)
                yield torch.stack(images), torch.tensor(labels)
    if not decoded:
        raise InvalidInput(
            f"none of the {len(samples)} images could be decoded "
            f"(first: {skipped[:SKIPPED_SHOWN]}); check that they are JPEG, PNG, WebP, BMP or GIF."
        )
