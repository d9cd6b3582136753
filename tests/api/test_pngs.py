import io

import numpy as np
from PIL import Image

from app.api.pngs import GRID_PADDING, encode_grid, encode_png


def _decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def test_a_png_keeps_every_pixel() -> None:
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    assert np.array_equal(_decoded(encode_png(pixels)), pixels)


def test_a_grid_tiles_row_major_with_a_black_gutter() -> None:
    images = [np.full((28, 28), value, dtype=np.uint8) for value in (10, 20, 30)]
    grid = _decoded(encode_grid(images, columns=2))
    step = 28 + GRID_PADDING
    assert grid.shape == (2 * step + GRID_PADDING, 2 * step + GRID_PADDING)

    def tile(row: int, column: int) -> np.ndarray:
        top, left = GRID_PADDING + row * step, GRID_PADDING + column * step
        return grid[top : top + 28, left : left + 28]

    assert (tile(0, 0) == 10).all() and (tile(0, 1) == 20).all() and (tile(1, 0) == 30).all()
    assert (tile(1, 1) == 0).all() and (grid[:GRID_PADDING] == 0).all()  # empty cell, gutter
