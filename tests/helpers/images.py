"""Image files built for tests: hostile ones that decoders must refuse cheaply, and PNGs
assembled chunk by chunk."""

from __future__ import annotations

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
