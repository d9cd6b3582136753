"""A corpus of hostile inputs for predict and v2 infer: each a 4xx (or a correct 200 for a
valid but unusual image), never a 5xx, and the service still answers a normal request after it."""

from __future__ import annotations

import base64
import functools
import io
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from PIL import Image
from starlette.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.helpers.apps import ADMIN_TOKEN, admin_headers
from tests.helpers.images import image_bytes, png_claiming
from tests.helpers.repo import REPO_ROOT

JPEG = "image/jpeg"
PNG = "image/png"
JSON = "application/json"
CLIENT_ERRORS = frozenset(range(400, 500))


@functools.cache
def _jpeg() -> bytes:
    return image_bytes((64, 48))


@functools.cache
def _png() -> bytes:
    return image_bytes((64, 48), fmt="PNG")


@functools.cache
def _gif_with_frames(count: int) -> bytes:
    """An animated GIF whose frames alternate colour (identical frames would be merged)."""
    frames = [Image.new("P", (8, 8), index % 2) for index in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    return buffer.getvalue()


def _encoded(mode: str, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (64, 48), 100 if mode in ("I;16", "L") else None).save(buffer, format=fmt)
    return buffer.getvalue()


def _rgba_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 48), (10, 200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _nested(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"0.0" + b"]" * depth + b"}"


def _flat_array(total_bytes: int) -> bytes:
    count = (total_bytes - 20) // 5
    return b'{"inputs": [' + b",".join([b"0.25"] * count) + b"]}"


def _cnn_tensor(value: str) -> bytes:
    row = ", ".join([value] * 28)
    return ('{"inputs": [[[' + ", ".join([f"[{row}]"] * 28) + "]]]}").encode()


def _v2_fp32(shape: list[int], data: str) -> bytes:
    return (
        f'{{"inputs": [{{"name": "input", "shape": {shape}, "datatype": "FP32", "data": {data}}}]}}'
    ).encode()


def _v2_binary_cnn(value: float) -> tuple[bytes, dict[str, str]]:
    header = (
        b'{"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", '
        b'"parameters": {"binary_data_size": 3136}}]}'
    )
    body = header + struct.pack("<f", value) * 784
    return body, {"Inference-Header-Content-Length": str(len(header))}


def _v2_image(data: bytes) -> bytes:
    encoded = base64.b64encode(data).decode()
    return (
        f'{{"inputs": [{{"name": "image", "shape": [1], "datatype": "BYTES", '
        f'"data": ["{encoded}"]}}]}}'
    ).encode()


@dataclass(frozen=True)
class Hostile:
    """One request: path, body (or a lazy factory), headers, query and the answers allowed."""

    path: str
    body: bytes | Callable[[], bytes]
    content_type: str | None
    expected: frozenset[int]
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    max_seconds: float = 10.0


def _predict(model: str = "alexnet") -> str:
    return f"/v1/models/{model}/predict"


OK = frozenset({200})
CASES: dict[str, Hostile] = {
    # images: broken, empty, bombs; and valid but unusual encodings
    "truncated-jpeg": Hostile(
        _predict(), lambda: _jpeg()[: len(_jpeg()) // 2], JPEG, CLIENT_ERRORS
    ),
    "truncated-png": Hostile(_predict(), lambda: _png()[: len(_png()) // 2], PNG, CLIENT_ERRORS),
    "zero-byte-raw": Hostile(_predict(), b"", JPEG, CLIENT_ERRORS),
    "zero-byte-octet": Hostile(_predict(), b"", "application/octet-stream", CLIENT_ERRORS),
    "png-100000x100000": Hostile(
        _predict(), lambda: png_claiming(100_000, 100_000), PNG, CLIENT_ERRORS
    ),
    "gif-10000-frames": Hostile(
        _predict(), lambda: _gif_with_frames(10_000), "image/gif", OK | CLIENT_ERRORS, max_seconds=3
    ),
    "png-16-bit": Hostile(_predict(), lambda: _encoded("I;16", "PNG"), PNG, OK),
    "jpeg-cmyk": Hostile(_predict(), lambda: _encoded("CMYK", "JPEG"), JPEG, OK),
    "png-rgba": Hostile(_predict(), _rgba_png, PNG, OK),
    "not-an-image": Hostile(_predict(), b"GIF89a but not really", "image/gif", CLIENT_ERRORS),
    "base64-truncated-jpeg": Hostile(
        _predict(),
        lambda: b'{"images": ["' + base64.b64encode(_jpeg()[:300]) + b'"]}',
        JSON,
        CLIENT_ERRORS,
    ),
    # tensors: non-finite numbers (JSON has no NaN; 1e999 overflows to inf)
    "nan-literal": Hostile(_predict("cnn"), lambda: _cnn_tensor("NaN"), JSON, CLIENT_ERRORS),
    "infinity-literal": Hostile(
        _predict("cnn"), lambda: _cnn_tensor("Infinity"), JSON, CLIENT_ERRORS
    ),
    "finite-tensor": Hostile(_predict("cnn"), lambda: _cnn_tensor("0.5"), JSON, OK),
    "overflow-to-inf": Hostile(_predict("cnn"), lambda: _cnn_tensor("1e999"), JSON, CLIENT_ERRORS),
    "float32-overflow": Hostile(_predict("cnn"), lambda: _cnn_tensor("1e39"), JSON, CLIENT_ERRORS),
    # top_k
    "top-k-negative": Hostile(_predict(), _jpeg, JPEG, CLIENT_ERRORS, params={"top_k": "-1"}),
    "top-k-zero": Hostile(_predict(), _jpeg, JPEG, CLIENT_ERRORS, params={"top_k": "0"}),
    "top-k-huge": Hostile(_predict(), _jpeg, JPEG, CLIENT_ERRORS, params={"top_k": "9" * 40}),
    "top-k-not-int": Hostile(_predict(), _jpeg, JPEG, CLIENT_ERRORS, params={"top_k": "1e3"}),
    "top-k-body-huge": Hostile(
        _predict("cnn"),
        lambda: _cnn_tensor("0.5")[:-1] + b', "top_k": 1e300}',
        JSON,
        CLIENT_ERRORS,
    ),
    "top-k-body-bigint": Hostile(
        _predict("cnn"),
        lambda: _cnn_tensor("0.5")[:-1] + b', "top_k": ' + b"9" * 400 + b"}",
        JSON,
        CLIENT_ERRORS,
    ),
    # model names
    "unicode-name": Hostile(_predict("モデル🙂"), _jpeg, JPEG, frozenset({404})),
    "overlong-name": Hostile(_predict("a" * 10_000), _jpeg, JPEG, frozenset({404})),
    "nul-in-name": Hostile(_predict("alex%00net"), _jpeg, JPEG, frozenset({404})),
    "generator-as-classifier": Hostile(_predict("gan"), _jpeg, JPEG, CLIENT_ERRORS),
    # content types
    "text-plain": Hostile(_predict(), b"hello", "text/plain", frozenset({415})),
    "no-content-type": Hostile(_predict(), _jpeg, None, frozenset({415})),
    "xml": Hostile(_predict(), b"<a/>", "application/xml", frozenset({415})),
    "json-labelled-as-image": Hostile(_predict(), b'{"inputs": [1]}', PNG, CLIENT_ERRORS),
    "image-labelled-as-json": Hostile(_predict(), _jpeg, JSON, CLIENT_ERRORS),
    "multipart-no-boundary": Hostile(_predict(), _jpeg, "multipart/form-data", CLIENT_ERRORS),
    "multipart-garbage": Hostile(
        _predict(), b"--x\r\nnonsense", "multipart/form-data; boundary=x", CLIENT_ERRORS
    ),
    "json-not-object": Hostile(_predict(), b"[1, 2, 3]", JSON, CLIENT_ERRORS),
    "json-invalid-utf8": Hostile(_predict(), b'{"inputs": "\xff\xfe"}', JSON, CLIENT_ERRORS),
    # JSON bombs
    "nested-100000": Hostile(_predict("cnn"), lambda: _nested(100_000), JSON, CLIENT_ERRORS),
    "nested-1000": Hostile(_predict("cnn"), lambda: _nested(1_000), JSON, CLIENT_ERRORS),
    "nested-100": Hostile(_predict("cnn"), lambda: _nested(100), JSON, CLIENT_ERRORS),
    "flat-array-near-limit": Hostile(
        _predict("cnn"), lambda: _flat_array(19 * 1024 * 1024), JSON, CLIENT_ERRORS, max_seconds=20
    ),
    "flat-array-over-limit": Hostile(
        _predict("cnn"), lambda: _flat_array(21 * 1024 * 1024), JSON, frozenset({413})
    ),
    "ragged-tensor": Hostile(_predict("cnn"), b'{"inputs": [[1, 2], [3]]}', JSON, CLIENT_ERRORS),
    "string-tensor": Hostile(_predict("cnn"), b'{"inputs": [["a", "b"]]}', JSON, CLIENT_ERRORS),
    # v2 infer
    "v2-nan-binary": Hostile(
        "/v2/models/cnn/infer",
        lambda: _v2_binary_cnn(float("nan"))[0],
        "application/octet-stream",
        CLIENT_ERRORS,
        headers=_v2_binary_cnn(0.0)[1],
    ),
    "v2-inf-binary": Hostile(
        "/v2/models/cnn/infer",
        lambda: _v2_binary_cnn(float("inf"))[0],
        "application/octet-stream",
        CLIENT_ERRORS,
        headers=_v2_binary_cnn(0.0)[1],
    ),
    "v2-overflow-json": Hostile(
        "/v2/models/cnn/infer",
        lambda: _v2_fp32([1, 1, 28, 28], "[" + ", ".join(["1e39"] * 784) + "]"),
        JSON,
        CLIENT_ERRORS,
    ),
    "v2-huge-shape": Hostile(
        "/v2/models/cnn/infer", lambda: _v2_fp32([10**9, 1, 28, 28], "[0.0]"), JSON, CLIENT_ERRORS
    ),
    "v2-negative-shape": Hostile(
        "/v2/models/cnn/infer", lambda: _v2_fp32([-1, 1, 28, 28], "[0.0]"), JSON, CLIENT_ERRORS
    ),
    "v2-bigint-shape": Hostile(
        "/v2/models/cnn/infer", lambda: _v2_fp32([10**30, 1, 28, 28], "[0.0]"), JSON, CLIENT_ERRORS
    ),
    "v2-nested-bomb": Hostile(
        "/v2/models/cnn/infer",
        lambda: _v2_fp32([1, 1, 28, 28], "[" * 100_000 + "0" + "]" * 100_000),
        JSON,
        CLIENT_ERRORS,
    ),
    "v2-png-bomb": Hostile(
        "/v2/models/alexnet/infer",
        lambda: _v2_image(png_claiming(100_000, 100_000)),
        JSON,
        CLIENT_ERRORS,
    ),
    "v2-truncated-jpeg": Hostile(
        "/v2/models/alexnet/infer", lambda: _v2_image(_jpeg()[:200]), JSON, CLIENT_ERRORS
    ),
    "v2-cmyk-jpeg": Hostile(
        "/v2/models/alexnet/infer", lambda: _v2_image(_encoded("CMYK", "JPEG")), JSON, OK
    ),
    "v2-top-k-negative": Hostile(
        "/v2/models/alexnet/infer",
        lambda: _v2_image(_jpeg())[:-1] + b', "parameters": {"top_k": -5}}',
        JSON,
        CLIENT_ERRORS,
    ),
    "v2-unicode-name": Hostile(
        "/v2/models/名前/infer", lambda: _v2_image(_jpeg()), JSON, frozenset({404})
    ),
    "v2-overlong-name": Hostile(
        "/v2/models/" + "b" * 10_000 + "/infer", lambda: _v2_image(_jpeg()), JSON, frozenset({404})
    ),
    "v2-text-plain": Hostile("/v2/models/cnn/infer", b"hi", "text/plain", CLIENT_ERRORS),
    "v2-empty": Hostile("/v2/models/cnn/infer", b"", JSON, CLIENT_ERRORS),
}


@pytest.fixture(scope="module")
def client(settings_factory_module: Callable[..., object]) -> Iterator[TestClient]:
    app = create_app(settings_factory_module(models=("alexnet", "cnn", "gan")))  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as test_client:
        deadline = time.monotonic() + 120
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app did not become ready in time"
            time.sleep(0.05)
        yield test_client


@pytest.fixture(scope="module")
def settings_factory_module(
    weights_dir: object, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., object]:
    def build(**overrides: object) -> object:
        values: dict[str, object] = {
            "weights_dir": weights_dir,
            "download_weights": False,
            "verify_weights": False,
            "checkpoint_dir": REPO_ROOT / "models",
            "data_dir": REPO_ROOT / "data",
            "admin_token": ADMIN_TOKEN,
            "device": "cpu",
            **overrides,
        }
        return Settings(**values)  # type: ignore[arg-type]

    return build


def _assert_still_serving(client: TestClient) -> None:
    normal = client.post(_predict(), content=_jpeg(), headers={"content-type": JPEG})
    assert normal.status_code == 200, normal.text
    assert len(normal.json()["predictions"][0]) == 5


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_input_is_refused_cleanly(client: TestClient, case: Hostile) -> None:
    body = case.body() if callable(case.body) else case.body
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["content-type"] = case.content_type
    started = time.monotonic()
    response = client.post(case.path, content=body, headers=headers, params=case.params)
    elapsed = time.monotonic() - started
    assert response.status_code in case.expected, (response.status_code, response.text[:500])
    assert elapsed < case.max_seconds, f"took {elapsed:.1f}s"
    if response.status_code >= 400:
        error = response.json()
        message = error.get("detail") or error.get("error")
        assert isinstance(message, str) and message, error
    _assert_still_serving(client)


@pytest.mark.parametrize("folder", ["0" * 300, "a\u0000b"], ids=["overlong", "nul-byte"])
def test_unusable_image_folder_is_a_400(client: TestClient, folder: str) -> None:
    """Found by the schema fuzz: the OS refusing the path was a 500."""
    response = client.post(
        "/admin/models/alexnet/evaluate", json={"image_folder": folder}, headers=admin_headers()
    )
    assert response.status_code == 400, response.text
    assert "image_folder" in response.json()["detail"]
