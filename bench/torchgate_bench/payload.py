"""The multipart/form-data body of a predict request, built once and replayed unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CRLF = b"\r\n"


@dataclass(frozen=True)
class UploadFile:
    """One ``file`` part: the name the server sees, its media type and its bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class MultipartBody:
    body: bytes
    content_type: str


def _boundary(files: Sequence[UploadFile]) -> str:
    """Derived from the contents, so the same inputs give byte-identical bodies (and the
    boundary cannot occur inside them by chance, bar a hash collision)."""
    digest = hashlib.sha256()
    for upload in files:
        digest.update(upload.data)
    return f"torchgate-bench-{digest.hexdigest()[:24]}"


def multipart_body(files: Sequence[UploadFile], field: str = "file") -> MultipartBody:
    """Every upload as a ``field`` part, as a browser or ``curl -F`` would send them."""
    if not files:
        raise ValueError("a predict body needs at least one file")
    boundary = _boundary(files)
    marker = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for upload in files:
        disposition = (
            f'Content-Disposition: form-data; name="{field}"; filename="{upload.filename}"'
        )
        chunks += [
            marker,
            _CRLF,
            disposition.encode("ascii"),
            _CRLF,
            f"Content-Type: {upload.content_type}".encode("ascii"),
            _CRLF,
            _CRLF,
            upload.data,
            _CRLF,
        ]
    chunks += [marker, b"--", _CRLF]
    return MultipartBody(b"".join(chunks), f"multipart/form-data; boundary={boundary}")


def raw_body(upload: UploadFile) -> MultipartBody:
    """One image as the whole body (``curl --data-binary``): no multipart framing at all."""
    return MultipartBody(upload.data, upload.content_type)


def write_body(body: MultipartBody, path: Path) -> Path:
    path.write_bytes(body.body)
    return path
