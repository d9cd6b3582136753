"""Attributions as pictures: mapped back onto the uploaded image, and drawn as a heatmap."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.serving.heatmap import (
    MAX_FRAME_SIDE,
    MIN_HEATMAP_SIDE,
    CropGeometry,
    overlay,
    overlay_on_input,
    strength,
    to_image_frame,
)

IMAGENET = CropGeometry(resize=256, crop=224)  # what torchvision's ImageNet transforms do


def test_the_crop_goes_back_where_the_preprocessing_took_it() -> None:
    values = np.ones((3, 224, 224), np.float32)
    framed = to_image_frame(values, (400, 300), IMAGENET)  # width 400, height 300
    assert framed.shape == (3, 300, 400)
    # the shorter side became 256 (scale 0.853): the crop covers 224/256 of the height and
    # 224/341 of the width, centred; what the model never saw is zero
    assert framed[:, 150, 200].tolist() == [1.0, 1.0, 1.0]
    assert framed[:, 150, 5].tolist() == [0.0, 0.0, 0.0]
    assert framed[:, 150, 394].tolist() == [0.0, 0.0, 0.0]
    covered = (framed[0, 150] > 0.5).sum()
    assert covered == pytest.approx(400 * 224 / 341, abs=3)


def test_large_images_get_a_frame_of_at_most_the_limit() -> None:
    framed = to_image_frame(np.ones((3, 224, 224), np.float32), (2000, 1000), IMAGENET)
    assert framed.shape == (3, MAX_FRAME_SIDE // 2, MAX_FRAME_SIDE)


def test_strength_is_relative_and_bounded() -> None:
    values = np.zeros((1, 10, 10), np.float32)
    values[0, 2, 3] = -5.0  # negative evidence is evidence too
    heat = strength(values)
    assert heat.shape == (10, 10)
    assert heat[2, 3] == 1.0 and heat.min() == 0.0
    assert strength(np.zeros((3, 4, 4), np.float32)).max() == 0.0  # nothing to show, no NaN


def test_a_28_pixel_input_is_drawn_enlarged_with_its_heat() -> None:
    sample = np.zeros((1, 28, 28), np.float32)
    values = np.zeros((1, 28, 28), np.float32)
    values[0, 14, 14] = 1.0
    pixels = overlay_on_input(values, sample)
    assert pixels.dtype == np.uint8 and pixels.shape == (MIN_HEATMAP_SIDE, MIN_HEATMAP_SIDE, 3)
    factor = MIN_HEATMAP_SIDE // 28
    hot = pixels[14 * factor, 14 * factor]
    cold = pixels[0, 0]
    assert hot[0] > 150 and cold.tolist() == [0, 0, 0]


def test_the_heatmap_lies_over_the_uploaded_image() -> None:
    photo = Image.new("RGB", (320, 240), (0, 0, 255))
    values = np.zeros((3, 240, 320), np.float32)
    values[:, 100:140, 140:180] = 1.0
    pixels = overlay(values, photo)
    assert pixels.shape == (240, 320, 3)
    assert pixels[10, 10].tolist() == [0, 0, 255]  # no heat: the photo as it was
    assert pixels[120, 160, 0] > 150  # heat: red over blue
