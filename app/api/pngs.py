"""Encode generated greyscale images as PNG files or one PNG grid: v1's wire format for
the GAN's answers (v2 and gRPC send the pixels as an FP32 tensor instead)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

GRID_PADDING = 2


def encode_png(pixels: np.ndarray) -> bytes:
    """Greyscale (uint8 [H, W]) or RGB (uint8 [H, W, 3]) pixels as a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_grid(images: Sequence[np.ndarray], columns: int = 10) -> bytes:
    """Tile equally sized images row-major with a black gutter, as one PNG."""
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    height, width = images[0].shape
    pad = GRID_PADDING
    grid = np.zeros((rows * (height + pad) + pad, columns * (width + pad) + pad), dtype=np.uint8)
    for position, image in enumerate(images):
        row, column = divmod(position, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[top : top + height, left : left + width] = image
    return encode_png(grid)
