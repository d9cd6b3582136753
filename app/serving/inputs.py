"""Turn client inputs (image files, nested-list tensors) into per-sample model tensors.

One codec per input kind; every check a client can fail raises a domain error with a sentence
that says what shape or format is expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from app.errors import InvalidInput
from app.serving import plain_png
from app.serving.images import finish_decoding, open_image
from app.zoo import FASHION_SIDE


def _check_finite(array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise InvalidInput("the input tensor contains NaN or infinite values; send finite numbers.")


@dataclass(frozen=True)
class ImageNetInput:
    """RGB images preprocessed by the torchvision Weights' own transforms; tensors [N,3,H,W]."""

    transform: Callable[[Image.Image], torch.Tensor]
    min_side: int = 64
    max_side: int = 1024

    @property
    def description(self) -> str:
        return (
            "image files (JPEG/PNG/WebP/BMP/GIF), or normalized float tensors "
            f"[N,3,H,W] with {self.min_side} <= H,W <= {self.max_side}"
        )

    def from_image(self, data: bytes, max_pixels: int) -> torch.Tensor:
        return self.from_opened(open_image(data, max_pixels))

    def from_plain_png(self, data: bytes, max_pixels: int) -> torch.Tensor | None:
        """No shortcut: a photo's decode is small next to its resize and forward."""
        return None

    def from_opened(self, image: Image.Image) -> torch.Tensor:
        return self.transform(finish_decoding(image, "RGB"))

    def example(self, batch: int) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, 224, 224),)

    def from_array(self, array: np.ndarray) -> list[torch.Tensor]:
        if array.ndim != 4 or array.shape[1] != 3:
            raise InvalidInput(f"inputs must have shape [N,3,H,W]; got {list(array.shape)}.")
        height, width = array.shape[2:]
        low, high = self.min_side, self.max_side
        if not (low <= height <= high and low <= width <= high):
            raise InvalidInput(
                f"inputs must be between {self.min_side} and {self.max_side} pixels on each "
                f"side; got {height}x{width}."
            )
        _check_finite(array)
        return list(torch.from_numpy(array).unbind(0))


@dataclass(frozen=True)
class FashionInput:
    """28x28 greyscale images normalized as in training; ``sequence`` drops the channel (LSTM)."""

    mean: float
    std: float
    sequence: bool = False

    @property
    def description(self) -> str:
        if self.sequence:
            return (
                "image files (any size/colour, converted to 28x28 greyscale), or float tensors "
                f"[N,T,28] with 1 <= T <= 28 (normalized rows; mean {self.mean}, std {self.std})"
            )
        return (
            "image files (any size/colour, converted to 28x28 greyscale), or float tensors "
            f"[N,1,28,28] (normalized; mean {self.mean}, std {self.std})"
        )

    def from_image(self, data: bytes, max_pixels: int) -> torch.Tensor:
        sample = self.from_plain_png(data, max_pixels)
        return self.from_opened(open_image(data, max_pixels)) if sample is None else sample

    def from_plain_png(self, data: bytes, max_pixels: int) -> torch.Tensor | None:
        """The sample when ``data`` is a plain greyscale PNG libspng decodes (app/serving/
        plain_png.py), else None: then Pillow decodes it through ``from_opened``."""
        pixels = plain_png.decode(data, max_pixels)
        return None if pixels is None else self._from_pixels(pixels)

    def example(self, batch: int) -> tuple[torch.Tensor, ...]:
        side = (FASHION_SIDE, FASHION_SIDE)
        return (torch.randn(batch, *side) if self.sequence else torch.randn(batch, 1, *side),)

    def from_opened(self, image: Image.Image) -> torch.Tensor:
        return self._from_pixels(np.asarray(finish_decoding(image, "L")))

    @cached_property
    def _normalized(self) -> np.ndarray:
        """Each of the 256 grey levels normalized as in training (float32 [256]): one lookup
        per image instead of a float copy and two passes over it."""
        levels = np.arange(256, dtype=np.float32)
        levels *= 1.0 / (255.0 * self.std)
        levels -= self.mean / self.std
        return levels

    def _from_pixels(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 [H, W] grey levels -> the model's normalized float32 sample."""
        if pixels.shape != (FASHION_SIDE, FASHION_SIDE):
            image = Image.fromarray(pixels)  # uint8 [H, W]: mode L
            resized = image.resize((FASHION_SIDE, FASHION_SIDE), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized)
        normalized = self._normalized[pixels]  # a new array, writable
        # numpy's view, not Tensor.unsqueeze: a torch call would give up the event loop's GIL
        return torch.from_numpy(normalized if self.sequence else normalized[np.newaxis])

    def from_array(self, array: np.ndarray) -> list[torch.Tensor]:
        if self.sequence:
            if array.ndim != 3 or array.shape[2] != FASHION_SIDE:
                raise InvalidInput(
                    "inputs must have shape [N,T,28] (T rows of 28 pixels); "
                    f"got {list(array.shape)}."
                )
            if not 1 <= array.shape[1] <= FASHION_SIDE:
                raise InvalidInput(f"sequence length T must be 1..28; got {array.shape[1]}.")
        elif array.ndim != 4 or array.shape[1:] != (1, FASHION_SIDE, FASHION_SIDE):
            raise InvalidInput(f"inputs must have shape [N,1,28,28]; got {list(array.shape)}.")
        _check_finite(array)
        return list(torch.from_numpy(array).unbind(0))


InputCodec = ImageNetInput | FashionInput
