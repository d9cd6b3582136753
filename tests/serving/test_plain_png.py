import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.serving import plain_png
from tests.helpers.images import grey_png, png_chunks, png_from_chunks

LIMIT = 64 * 64


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def with_chunk(data: bytes, kind: bytes, payload: bytes) -> bytes:
    """``data`` with one more chunk just before its first IDAT."""
    chunks = png_chunks(data)
    first_idat = next(i for i, (name, _) in enumerate(chunks) if name == b"IDAT")
    return png_from_chunks([*chunks[:first_idat], (kind, payload), *chunks[first_idat:]])


def with_header(data: bytes, depth: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    chunks = png_chunks(data)
    width, height = struct.unpack_from(">II", chunks[0][1])
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return png_from_chunks([(b"IHDR", header), *chunks[1:]])


@pytest.mark.parametrize("shape", [(28, 28), (1, 1), (10, 40), (64, 64)])
def test_plain_greyscale_pngs_decode_to_pillows_pixels(shape: tuple[int, int]) -> None:
    data = grey_png(shape)
    pixels = plain_png.decode(data, LIMIT)
    assert pixels is not None and pixels.dtype == np.uint8
    assert np.array_equal(pixels, pillow_pixels(data))


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        (b"gAMA", struct.pack(">I", 45455)),  # neither Pillow nor libspng applies it
        (b"sRGB", b"\x00"),
        (b"tIME", struct.pack(">HBBBBB", 2026, 12, 1, 12, 0, 0)),
    ],
)
def test_chunks_that_leave_the_pixels_alone_keep_the_shortcut(kind: bytes, payload: bytes) -> None:
    data = with_chunk(grey_png(), kind, payload)
    pixels = plain_png.decode(data, LIMIT)
    assert pixels is not None and np.array_equal(pixels, pillow_pixels(data))


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00"),  # EXIF: Pillow may rotate
        (b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x/>"),  # XMP: likewise
        (b"tEXt", b"exif\x00anything"),  # text lands in Pillow's info under its keyword
        (b"tRNS", b"\x00\x00"),
        (b"acTL", struct.pack(">II", 2, 0)),  # animation
        (b"zzZz", b"unknown"),
    ],
)
def test_chunks_that_can_change_pillows_answer_go_to_pillow(kind: bytes, payload: bytes) -> None:
    assert plain_png.decode(with_chunk(grey_png(), kind, payload), LIMIT) is None


@pytest.mark.parametrize(
    "header", [{"depth": 16}, {"colour": 2}, {"colour": 3}, {"colour": 4}, {"interlace": 1}]
)
def test_only_plain_8_bit_greyscale_takes_the_shortcut(header: dict[str, int]) -> None:
    assert plain_png.decode(with_header(grey_png(), **header), LIMIT) is None


def test_other_images_and_other_files_go_to_pillow() -> None:
    rgb = io.BytesIO()
    Image.new("RGB", (28, 28), (10, 20, 30)).save(rgb, format="PNG")
    jpeg = io.BytesIO()
    Image.new("L", (28, 28), 128).save(jpeg, format="JPEG")
    for data in (rgb.getvalue(), jpeg.getvalue(), b"", b"\x89PNG\r\n\x1a\n", b"not an image"):
        assert plain_png.decode(data, LIMIT) is None


def test_damaged_files_go_to_pillow_which_gives_the_error() -> None:
    data = grey_png()
    chunks = png_chunks(data)
    idat = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    bad_crc = bytearray(data)
    bad_crc[-20] ^= 0xFF  # inside the IDAT data, whose checksum no longer matches
    garbage = png_from_chunks([*chunks[:idat], (b"IDAT", b"not zlib at all"), *chunks[idat + 1 :]])
    short = png_from_chunks(
        [*chunks[:idat], (b"IDAT", zlib.compress(b"\x00" * 29)), (b"IEND", b"")]
    )
    for damaged in (bytes(bad_crc), data[:-12], data[:40], data + b"trailing", garbage, short):
        assert plain_png.decode(damaged, LIMIT) is None


def test_pixel_data_that_pillow_would_refuse_goes_to_pillow() -> None:
    """libspng, as pyspng calls it, skips the zlib checksum and tolerates extra data."""
    chunks = png_chunks(grey_png())
    idat = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    rows = zlib.decompress(chunks[idat][1])
    stream = bytearray(zlib.compress(rows))
    stream[-1] ^= 0xFF  # the adler-32 at the end of the stream
    for pixel_data in (bytes(stream), zlib.compress(rows + b"\x00" * 29)):
        damaged = png_from_chunks([*chunks[:idat], (b"IDAT", pixel_data), *chunks[idat + 1 :]])
        assert plain_png.decode(damaged, LIMIT) is None


def test_the_pixel_and_size_bounds_send_big_files_to_pillow() -> None:
    assert plain_png.decode(grey_png((65, 64)), LIMIT) is None
    assert plain_png.decode(grey_png((28, 28)), 28 * 28 - 1) is None
    padded = with_chunk(grey_png(), b"pHYs", b"\x00" * (plain_png.MAX_FILE_BYTES + 1))
    assert plain_png.decode(padded, LIMIT) is None


def test_without_pyspng_every_file_goes_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain_png, "pyspng", None)
    assert plain_png.decode(grey_png(), LIMIT) is None


def _with_valid_checksums(data: bytes) -> bytes:
    """``data`` re-chunked with every checksum recomputed, so libspng reads past them."""
    try:
        return png_from_chunks(png_chunks(data))
    except struct.error:
        return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    flips=st.lists(st.tuples(st.integers(8, 400), st.integers(1, 255)), max_size=6),
    cut=st.integers(0, 400),
    fix_checksums=st.booleans(),
)
def test_damaged_pngs_never_raise_and_agree_with_pillow(
    seed: int, flips: list[tuple[int, int]], cut: int, fix_checksums: bool
) -> None:
    """Untrusted bytes reach libspng: whatever they are, ``decode`` never raises, and returns
    None or exactly the pixels Pillow reads from the same file (never an image where Pillow
    would refuse the file)."""
    data = bytearray(grey_png((int(seed % 40) + 1, 28), seed=seed))
    for offset, mask in flips:
        if offset < len(data):
            data[offset] ^= mask
    damaged = bytes(data[: max(cut, 8)] if cut < len(data) else data)
    if fix_checksums:
        damaged = _with_valid_checksums(damaged)
    pixels = plain_png.decode(damaged, LIMIT)
    if pixels is not None:  # then Pillow, which checks everything, reads the same pixels
        assert np.array_equal(pixels, pillow_pixels(damaged))
