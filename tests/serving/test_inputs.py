import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.serving import plain_png
from app.serving.images import open_image
from app.serving.inputs import FashionInput
from tests.helpers.images import grey_png

LIMIT = 40_000_000
MEAN, STD = 0.2860, 0.3530


def pillow_sample(codec: FashionInput, data: bytes) -> torch.Tensor:
    return codec.from_opened(open_image(data, LIMIT))


@pytest.mark.parametrize("sequence", [False, True])
@pytest.mark.parametrize("shape", [(28, 28), (12, 40)])
def test_plain_pngs_give_the_same_sample_as_pillow(sequence: bool, shape: tuple[int, int]) -> None:
    codec = FashionInput(MEAN, STD, sequence=sequence)
    data = grey_png(shape)
    shortcut = codec.from_plain_png(data, LIMIT)
    assert shortcut is not None
    assert torch.equal(shortcut, pillow_sample(codec, data))
    assert torch.equal(codec.from_image(data, LIMIT), shortcut)
    assert shortcut.shape == ((28, 28) if sequence else (1, 28, 28))


def test_other_files_are_decoded_by_pillow_as_before() -> None:
    codec = FashionInput(MEAN, STD)
    buffer = io.BytesIO()
    Image.new("RGB", (30, 30), (200, 100, 50)).save(buffer, format="PNG")
    assert codec.from_plain_png(buffer.getvalue(), LIMIT) is None
    sample = codec.from_image(buffer.getvalue(), LIMIT)
    grey = np.asarray(Image.new("RGB", (30, 30), (200, 100, 50)).convert("L").resize((28, 28)))
    expected = (grey.astype(np.float32) / 255 - MEAN) / STD
    assert np.allclose(sample.numpy()[0], expected, atol=1e-6)


def test_grey_levels_are_normalized_as_in_training() -> None:
    codec = FashionInput(MEAN, STD)
    levels = np.array([[0, 255] * 14] * 28, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    sample = codec.from_image(buffer.getvalue(), LIMIT).numpy()[0]
    assert sample[0, 0] == pytest.approx(-MEAN / STD, abs=1e-6)
    assert sample[0, 1] == pytest.approx((1 - MEAN) / STD, abs=1e-6)
    assert sample.dtype == np.float32 and sample.flags.writeable


def test_without_pyspng_the_samples_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = FashionInput(MEAN, STD)
    data = grey_png()
    with_pyspng = codec.from_image(data, LIMIT)
    monkeypatch.setattr(plain_png, "pyspng", None)
    assert torch.equal(codec.from_image(data, LIMIT), with_pyspng)
