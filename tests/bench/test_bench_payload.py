import pytest
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.requests import Request
from starlette.types import Message

from torchgate_bench.images import garment_png, photo_jpeg
from torchgate_bench.payload import multipart_body


async def _form_of(body: bytes, content_type: str) -> list[tuple[str | None, str | None, bytes]]:
    """Parse ``body`` exactly as the server's route does: Starlette's Request.form()."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", b"%d" % len(body)),
        ],
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(scope, receive).form() as form:
        parts = form.getlist("file")
        assert all(isinstance(part, StarletteUpload) for part in parts)
        return [(p.filename, p.content_type, await p.read()) for p in parts]  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_body_parses_into_the_same_files_in_order() -> None:
    photo, garment = photo_jpeg(), garment_png()
    body = multipart_body([photo, garment, photo])
    assert body.content_type.startswith("multipart/form-data; boundary=")
    parts = await _form_of(body.body, body.content_type)
    assert parts == [
        ("photo.jpg", "image/jpeg", photo.data),
        ("garment.png", "image/png", garment.data),
        ("photo.jpg", "image/jpeg", photo.data),
    ]


def test_same_inputs_give_the_same_bytes() -> None:
    assert multipart_body([garment_png()]).body == multipart_body([garment_png()]).body


def test_raw_body_is_the_image_itself() -> None:
    from torchgate_bench.payload import UploadFile, raw_body

    png = garment_png()
    body = raw_body(UploadFile("g.png", "image/png", png))
    assert body.body == png and body.content_type == "image/png"
