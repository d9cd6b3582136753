"""Attributions as pictures: back onto the uploaded image's frame, and as a heatmap over it.

CPU work on numpy arrays (and one torch resize), run in the decode pool, never on the event
loop or the device worker. The PNG encoding itself is the HTTP adapter's (app/api/pngs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

MAX_FRAME_SIDE = 512  # attributions mapped to an image keep at most this many pixels a side
MIN_HEATMAP_SIDE = 224  # a 28x28 input is shown 8 times larger
HEAT_PERCENTILE = 99.0  # the attribution strength shown at full heat (Captum's outlier clip)
HEAT_OPACITY = 0.7


@dataclass(frozen=True)
class CropGeometry:
    """torchvision's ImageNet preprocessing: shorter side resized to ``resize``, then the
    centre ``crop`` x ``crop`` square (the Weights' transforms: resize_size, crop_size)."""

    resize: int
    crop: int

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, computed as torchvision's resize does."""
        short, long = sorted((width, height))
        new_long = int(self.resize * long / short)
        return (self.resize, new_long) if width <= height else (new_long, self.resize)


def fit(width: int, height: int, max_side: int = MAX_FRAME_SIDE) -> tuple[int, int]:
    """(width, height) scaled down, keeping the aspect ratio, to at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_image_frame(values: np.ndarray, size: tuple[int, int], geometry: CropGeometry) -> np.ndarray:
    """Attributions over the model's centre crop ([C, crop, crop]) mapped back onto the
    uploaded image (``size``: width, height), scaled down to at most MAX_FRAME_SIDE pixels a
    side: the crop is put where the preprocessing took it from, and what the model never saw
    (outside the crop) is zero."""
    width, height = size
    resized_w, resized_h = geometry.resized(width, height)
    canvas = np.zeros((values.shape[0], resized_h, resized_w), dtype=np.float32)
    top = round((resized_h - values.shape[1]) / 2.0)
    left = round((resized_w - values.shape[2]) / 2.0)
    canvas[:, top : top + values.shape[1], left : left + values.shape[2]] = values
    out_w, out_h = fit(width, height)
    scaled = functional.interpolate(
        torch.from_numpy(canvas)[None], size=(out_h, out_w), mode="bilinear", align_corners=False
    )
    return np.ascontiguousarray(scaled[0].numpy())


def strength(values: np.ndarray) -> np.ndarray:
    """Per pixel, in [0, 1]: |sum over channels|, relative to its 99th percentile."""
    score = np.abs(values.sum(axis=0) if values.ndim == 3 else values).astype(np.float32)
    top = float(np.percentile(score, HEAT_PERCENTILE)) if score.size else 0.0
    if not np.isfinite(top) or top <= 0:
        top = float(score.max()) if score.size and np.isfinite(score.max()) else 0.0
    return np.clip(score / top, 0.0, 1.0) if top > 0 else np.zeros_like(score)


def _hot(strength: np.ndarray) -> np.ndarray:
    """The "hot" colour map: black, red, yellow, white."""
    ramp = np.stack([strength * 3, strength * 3 - 1, strength * 3 - 2], axis=-1)
    return np.clip(ramp, 0.0, 1.0) * 255


def grey_background(sample: np.ndarray) -> np.ndarray:
    """An input tensor as an RGB picture (uint8 [H, W, 3]): each channel stretched to 0..255."""
    pixels = sample if sample.ndim == 3 else sample[np.newaxis]
    low = pixels.min(axis=(1, 2), keepdims=True)
    span = np.maximum(pixels.max(axis=(1, 2), keepdims=True) - low, 1e-12)
    scaled = ((pixels - low) / span * 255).round().astype(np.uint8)
    if scaled.shape[0] != 3:
        scaled = np.repeat(scaled[:1], 3, axis=0)
    return np.ascontiguousarray(scaled.transpose(1, 2, 0))


def overlay_on_input(values: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """The heatmap over the input tensor itself (no uploaded image to draw it on)."""
    return overlay(values, grey_background(sample))


def overlay(values: np.ndarray, background: Image.Image | np.ndarray) -> np.ndarray:
    """The heatmap (uint8 [H, W, 3]) of ``values`` over ``background``, enlarged (nearest
    neighbour, so pixels stay sharp) until its shorter side is at least MIN_HEATMAP_SIDE."""
    heat = strength(values)
    height, width = heat.shape
    if isinstance(background, np.ndarray):
        background = Image.fromarray(background)
    base = np.asarray(
        background.convert("RGB").resize((width, height), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    alpha = (HEAT_OPACITY * heat)[..., np.newaxis]
    blended = (base * (1 - alpha) + _hot(heat) * alpha).round().astype(np.uint8)
    factor = max(1, -(-MIN_HEATMAP_SIDE // min(height, width)))
    if factor > 1:
        blended = blended.repeat(factor, axis=0).repeat(factor, axis=1)
    return np.ascontiguousarray(blended)
