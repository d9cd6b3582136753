"""Image files built for tests: synthetic photos and garments, hostile ones that decoders
must refuse cheaply, PNGs assembled chunk by chunk, and generated images compared with v1's."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and a valid checksum."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file, in order."""
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(png_chunk(kind, data) for kind, data in chunks)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge canvas but carries almost no data (a bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return png_from_chunks(
        [(b"IHDR", header), (b"IDAT", zlib.compress(b"\x00" * 64)), (b"IEND", b"")]
    )


def grey_png(shape: tuple[int, int] = (28, 28), seed: int = 0) -> bytes:
    """A plain 8-bit greyscale PNG of random pixels, as Pillow saves it."""
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def garment_png(shade: int = 90) -> bytes:
    """A 28x28 greyscale PNG with a garment-like blob, the Fashion-MNIST models' input."""
    image = Image.new("L", (28, 28), 0)
    for x in range(6, 22):
        for y in range(3, 26):
            image.putpixel((x, y), (shade + 3 * x + y) % 256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(
    size: tuple[int, int] = (500, 375),
    color: tuple[int, int, int] = (200, 30, 30),
    fmt: str = "JPEG",
    mode: str = "RGB",
) -> bytes:
    """A small synthetic image; a gradient so that different colours give different inputs."""
    image = Image.new(mode, size, color if mode == "RGB" else 128)
    if mode == "RGB":
        for x in range(0, size[0], 7):
            for y in range(0, size[1], 11):
                image.putpixel((x, y), (x % 256, y % 256, (x + y) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def assert_same_images_as_v1(images: np.ndarray, encoded_pngs: list[str]) -> None:
    """Generator outputs in [-1, 1] ([N,1,28,28]) against v1 generate's base64 PNGs: the same
    pixels, give or take one level of rounding."""
    pixels = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
    for mine, encoded in zip(pixels, encoded_pngs, strict=True):
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
        assert np.abs(mine[0].astype(int) - png).max() <= 1
