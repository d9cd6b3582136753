"""Decode small plain 8-bit greyscale PNGs (what Fashion-MNIST clients send) with libspng.

Why: for the cnn at thousands of requests per second the decode runs on the event loop, and
Pillow's header parsing, chunk reading and ``load()`` are Python: about 35 us for a 28x28 file,
a fifth of the loop's time per request. libspng (through pyspng, which keeps the GIL: nothing
else waits on the loop) decodes it in about 5 us.

Only a file that Pillow would decode to exactly the same pixels is taken here: a PNG that is
greyscale, 8 bits, not interlaced, with valid checksums on every chunk and on its compressed
pixel data, exactly as much pixel data as its size needs, and no chunk that changes Pillow's
answer (EXIF or XMP orientation and the text chunks that can carry them, transparency,
animation, anything unknown). For anything else, a file over the size bound or one libspng
refuses, ``decode`` returns None and the caller goes through Pillow, which keeps every error
message and check it always had.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # a dependency; missing where a checkout is installed with --no-deps (the device check)
    import pyspng
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    pyspng = None

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FILE_BYTES = 64 * 1024  # a 64x64 greyscale PNG takes at most about 4.3 KB
# length, "IHDR", width, height, bit depth, colour type, compression, filter, interlace
_IHDR = struct.Struct(">I4sIIBBBBB")
_CHUNK_HEAD = struct.Struct(">I4s")
_CRC = struct.Struct(">I")
GREYSCALE, EIGHT_BITS, NOT_INTERLACED = 0, 8, 0
# Chunks that do not change the pixels Pillow decodes for a greyscale image: it keeps them in
# ``info`` (or skips them) and applies none of them.
INERT_CHUNKS = frozenset(
    {b"IDAT", b"IEND", b"pHYs", b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"sBIT", b"bKGD", b"tIME"}
)


def _plain(data: bytes, max_pixels: int) -> bool:
    """Whether ``data`` is a whole, checksummed, plain 8-bit greyscale PNG of at most
    ``max_pixels`` pixels whose chunks are all inert."""
    if not (len(data) <= MAX_FILE_BYTES and data.startswith(SIGNATURE)):
        return False
    offset = len(SIGNATURE)
    if len(data) < offset + _IHDR.size + _CRC.size:
        return False
    length, kind, width, height, depth, colour, _, _, interlace = _IHDR.unpack_from(data, offset)
    plain = (depth, colour, interlace) == (EIGHT_BITS, GREYSCALE, NOT_INTERLACED)
    if kind != b"IHDR" or length != 13 or not plain or not 0 < width * height <= max_pixels:
        return False
    compressed = []
    while offset + _CHUNK_HEAD.size + _CRC.size <= len(data):
        length, kind = _CHUNK_HEAD.unpack_from(data, offset)
        end = offset + _CHUNK_HEAD.size + length
        first = offset == len(SIGNATURE)  # the IHDR read above
        if end + _CRC.size > len(data) or not (first or kind in INERT_CHUNKS):
            return False
        if zlib.crc32(data[offset + 4 : end]) != _CRC.unpack_from(data, end)[0]:
            return False
        if kind == b"IDAT":
            compressed.append(data[offset + _CHUNK_HEAD.size : end])
        elif kind == b"IEND":
            return end + _CRC.size == len(data) and _whole_stream(compressed, width, height)
        offset = end + _CRC.size
    return False  # no IEND: truncated


def _whole_stream(compressed: list[bytes], width: int, height: int) -> bool:
    """Whether the pixel data inflates, with a valid zlib checksum (which Pillow checks and
    libspng, as pyspng calls it, does not), to exactly one filter byte and ``width`` pixels
    per row. A few microseconds for a file this small."""
    expected = height * (width + 1)
    try:
        rows = zlib.decompress(b"".join(compressed), zlib.MAX_WBITS, expected)
    except zlib.error:
        return False
    return len(rows) == expected


def decode(data: bytes, max_pixels: int) -> np.ndarray | None:
    """The pixels as uint8 [height, width], or None when Pillow must decode the file."""
    if pyspng is None or not _plain(data, max_pixels):
        return None
    try:
        pixels = pyspng.load(data, format="L")
    except RuntimeError:  # what libspng refuses, Pillow refuses with its own words
        return None
    return pixels if pixels.dtype == np.uint8 and pixels.ndim == 2 else None
