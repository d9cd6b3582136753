"""Decode untrusted image bytes safely: format allow-list, pixel limit from the header, RGB out."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # Pillow tries them in this order
# Where Pillow finds an orientation (EXIF, or XMP when there is no EXIF); without any of these,
# exif_transpose would only parse metadata to find nothing.
_ORIENTATION_KEYS = ("exif", "xmp", "XML:com.adobe.xmp")

Image.init()  # register every plugin now, so the format allow-list resolves on first use
# Pillow's own bomb guard stays on as a second line of defence behind our header check.
Image.MAX_IMAGE_PIXELS = 200_000_000


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit and float greyscale images cannot go straight to RGB; rescale them first."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return image.point(lambda value: value / 256).convert("L")
    if image.mode == "F":
        return image.convert("L")
    return image


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read only the header and check format and pixel count: cheap enough for the event loop,
    and a decompression bomb is refused before any of its pixels is allocated."""
    if not data:
        raise InvalidInput("the image is empty (0 bytes); send the file's contents.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            "the upload is not an image in a supported format; send JPEG, PNG, WebP, BMP or GIF."
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(
            f"the image has too many pixels; the limit is {max_pixels:,}."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"the image header could not be read ({exc}).") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,} (TORCHGATE_MAX_IMAGE_PIXELS)."
        )
    if width == 0 or height == 0:
        raise InvalidInput("the image has no pixels.")
    return image


def finish_decoding(image: Image.Image, mode: str = "RGB") -> Image.Image:
    """Decode the pixels of an opened image (first frame of animations) into ``mode``."""
    try:
        image.seek(0)
        image.load()
        image = _to_8bit(image)
        if any(key in image.info for key in _ORIENTATION_KEYS):
            image = ImageOps.exif_transpose(image) or image
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image if image.mode == mode else image.convert(mode)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(
            f"the image is corrupt or truncated and could not be decoded ({exc})."
        ) from exc


def decode_image(data: bytes, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """Open, check and fully decode one image into ``mode``."""
    return finish_decoding(open_image(data, max_pixels), mode)
