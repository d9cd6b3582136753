"""Deterministic synthetic inputs: a photo-like JPEG for ImageNet models, a small PNG for the
Fashion-MNIST ones. Synthetic, so the bench needs no dataset and every run sends the same bytes."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from torchgate_bench.payload import UploadFile

PHOTO_SIZE = (500, 375)
FASHION_SIZE = (28, 28)


def _photo(seed: int) -> Image.Image:
    """Smooth gradients, overlapping shapes, blur and sensor-like noise: JPEG compresses and
    decodes this about as it would a real photo (flat test patterns are unrealistically cheap)."""
    rng = random.Random(seed)
    width, height = PHOTO_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack(
        [90 + 120 * ys / height, 140 + 60 * xs / width, 220 - 100 * ys / height], axis=-1
    )
    image = Image.fromarray(sky.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(24):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, 220), y0 + rng.randrange(20, 180)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(2.5))
    noise = np.random.default_rng(seed).normal(0, 6, (height, width, 3))
    pixels = (np.asarray(image, dtype=np.float32) + noise).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _garment(seed: int) -> Image.Image:
    """A light shirt-like silhouette on black, like a Fashion-MNIST sample."""
    rng = random.Random(seed)
    image = Image.new("L", FASHION_SIZE, 0)
    draw = ImageDraw.Draw(image)
    shade = rng.randrange(150, 230)
    draw.rectangle((8, 5, 19, 25), fill=shade)
    draw.polygon([(8, 5), (2, 12), (5, 15), (8, 11)], fill=shade - 20)
    draw.polygon([(19, 5), (25, 12), (22, 15), (19, 11)], fill=shade - 20)
    draw.ellipse((11, 3, 16, 7), fill=0)
    return image


def photo_jpeg(seed: int = 0, quality: int = 90) -> UploadFile:
    buffer = io.BytesIO()
    _photo(seed).save(buffer, format="JPEG", quality=quality)
    return UploadFile("photo.jpg", "image/jpeg", buffer.getvalue())


def garment_png(seed: int = 0) -> UploadFile:
    buffer = io.BytesIO()
    _garment(seed).save(buffer, format="PNG")
    return UploadFile("garment.png", "image/png", buffer.getvalue())


def input_file_for(model: str) -> UploadFile:
    """What a client of ``model`` would upload: a photo for ImageNet models, else a garment."""
    from app.zoo import SPECS

    return photo_jpeg() if SPECS[model].pretrained is not None else garment_png()
