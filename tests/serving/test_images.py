import io

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.serving.images import decode_image
from tests.helpers.images import image_bytes, png_claiming

LIMIT = 40_000_000


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    image = decode_image(image_bytes((64, 48), fmt=fmt), LIMIT)
    assert image.mode == "RGB" and image.size == (64, 48)


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "I;16", "LA", "P", "1"])
def test_unusual_modes_become_rgb(mode: str) -> None:
    source = Image.new(mode, (20, 10))
    buffer = io.BytesIO()
    source.save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    if mode == "CMYK":
        buffer = io.BytesIO()
        source.save(buffer, format="JPEG")
    image = decode_image(buffer.getvalue(), LIMIT)
    assert image.mode == "RGB" and image.size == (20, 10)


def test_sixteen_bit_images_keep_their_brightness() -> None:
    source = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    image = decode_image(buffer.getvalue(), LIMIT, mode="L")
    assert np.asarray(image).min() == 255


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    image = decode_image(buffer.getvalue(), LIMIT)
    red, _, blue = image.getpixel((4, 4))
    assert red > 200 and blue < 50


def test_non_images_are_unsupported_media() -> None:
    with pytest.raises(UnsupportedMediaType, match="JPEG, PNG"):
        decode_image(b"%PDF-1.4 definitely not an image", LIMIT)


def test_empty_file_is_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"", LIMIT)


def test_truncated_image_is_invalid_input() -> None:
    data = image_bytes((300, 200), fmt="PNG")
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2], LIMIT)


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (8_000, 6_000)])
def test_pixel_bombs_are_refused_from_the_header(width: int, height: int) -> None:
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(png_claiming(width, height), LIMIT)


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        decode_image(image_bytes((20, 20), fmt="PNG"), max_pixels=100)
