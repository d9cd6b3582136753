"""v1 explanations: why a classifier answered as it did, as attributions (JSON) or a heatmap.

The same inputs as predict, read and decoded by predict's own steps; the explanation itself
runs in the model's explanation queue, after its predict batches (app/serving/explain_queue.py).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from app.api.explain_options import describe, explain_options
from app.api.inference import PREDICT_REQUEST_BODY
from app.api.parameters import MODEL_NAME, TOP_K, serving_state
from app.api.parsing import read_predict_payload, resolve_top_k
from app.api.pngs import encode_png
from app.api.schemas import ErrorResponse
from app.api.v1_adapter import answer_headers
from app.errors import BadRequest, InvalidInput
from app.serving.explain import BASELINES, DEFAULT_STEPS, MAX_STEPS, METHODS
from app.serving.explain_queue import Explained, Explainer, rows_of
from app.serving.heads import rank
from app.serving.runtime import ModelRuntime

router = APIRouter(prefix="/v1", tags=["inference"])

FORMATS = ("json", "png")
INLINE_JSON_VALUES = 4096  # larger answers are serialized in the decode pool


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_EXPLAIN_OPENAPI = {
    "parameters": [
        MODEL_NAME,
        _query(
            "method",
            {"type": "string", "enum": list(METHODS), "default": METHODS[0]},
            "Captum's method; gradcam for the convolutional classifiers only.",
        ),
        _query(
            "steps",
            {"type": "integer", "minimum": 1, "maximum": MAX_STEPS, "default": DEFAULT_STEPS},
            "Integrated gradients' steps along the path from the baseline to the input.",
        ),
        _query(
            "baseline",
            {"type": "string", "enum": list(BASELINES), "default": BASELINES[0]},
            "Integrated gradients' starting point: zeros, or the input blurred.",
        ),
        _query(
            "target",
            {"type": "integer", "minimum": 0},
            "The class explained (default: the predicted one).",
        ),
        _query(
            "format",
            {"type": "string", "enum": list(FORMATS), "default": "json"},
            "json: attributions; png: a heatmap over the input (one input).",
        ),
        TOP_K,
    ],
    "requestBody": PREDICT_REQUEST_BODY,
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 415, 422, 503)},
    200: {
        "content": {"application/json": {}, "image/png": {}},
        "description": "Attributions per input (JSON), or a heatmap over the one input (PNG).",
    },
}


def _explainer(runtime: ModelRuntime) -> Explainer:
    if runtime.explainer is None:
        raise BadRequest(f"model {runtime.spec.name!r} cannot be explained.")
    return runtime.explainer


@router.post("/models/{name}/explain", responses=_RESPONSES, openapi_extra=_EXPLAIN_OPENAPI)
async def explain(request: Request) -> Response:
    """Attribute a classifier's answer to its input (Captum): attributions, or a heatmap."""
    name: str = request.path_params["name"]  # parameters read here, declared above
    registry, settings = serving_state(request)
    runtime = registry.runtime(name)
    query = request.query_params
    options = explain_options(query, runtime)  # refused before the body is read (a generator too)
    explainer = _explainer(runtime)
    answer = query.get("format") or "json"
    if answer not in FORMATS:
        raise BadRequest(f"format must be json or png; got {answer[:40]!r}.")
    payload = await read_predict_payload(request, settings, runtime.on_decode_pool)
    k = resolve_top_k(query.get("top_k"), payload.top_k, num_classes=len(runtime.labels))
    if payload.images is not None:
        samples = await runtime.decode_images(payload.images)
    else:
        assert payload.array is not None
        samples = runtime.samples_from_array(payload.array)
    if answer == "png" and len(samples) != 1:
        raise InvalidInput(f"format=png draws one input's heatmap; got {len(samples)} inputs.")
    explained = await explainer.explain(samples, options)
    if payload.images is not None:
        explained = await explainer.on_images(explained, payload.images)
    headers = answer_headers(runtime, explained.version)
    if answer == "png":
        image = payload.images[0] if payload.images is not None else None
        pixels = await explainer.heatmap(explained.attributions[0], samples[0], image)
        headers.update(_png_headers(runtime, explained, options.method))
        png = await runtime.on_decode_pool(encode_png, pixels)
        return Response(png, media_type="image/png", headers=headers)
    body = _body(runtime, explained, describe(options), k)
    values = sum(a.values.size for a in explained.attributions)
    if values > INLINE_JSON_VALUES:
        content = await runtime.on_decode_pool(_dumps, body)
    else:
        content = _dumps(body)
    return Response(content, media_type="application/json", headers=headers)


_dumps = functools.partial(orjson.dumps, option=orjson.OPT_SERIALIZE_NUMPY)


def _body(
    runtime: ModelRuntime, explained: Explained, options: dict[str, object], k: int
) -> dict[str, Any]:
    labels = runtime.labels
    rows = runtime.spec.explain is not None and runtime.spec.explain.rows
    items = []
    for attribution in explained.attributions:
        (ranked,) = rank([attribution.probabilities], labels, k)
        item: dict[str, Any] = {
            "target": attribution.target,
            "label": labels[attribution.target],
            "predictions": [p.__dict__ for p in ranked],
            "shape": list(attribution.values.shape),
            "attributions": attribution.values,
        }
        if attribution.delta is not None:
            item["convergence_delta"] = attribution.delta
        if rows:
            item["row_attributions"] = rows_of(attribution.values)
        items.append(item)
    return {
        "model": runtime.spec.name,
        "parameters_version": explained.version,
        "parameters_sha256": runtime.sha256_of(explained.version),
        **options,
        "explanations": items,
    }


def _png_headers(runtime: ModelRuntime, explained: Explained, method: str) -> dict[str, str]:
    """What the picture cannot say: which method, which class, and how well IG converged."""
    attribution = explained.attributions[0]
    label = runtime.labels[attribution.target].encode("ascii", "replace").decode("ascii")
    headers = {
        "X-Explanation-Method": method,
        "X-Explanation-Target": str(attribution.target),
        "X-Explanation-Label": label,
    }
    if attribution.delta is not None:
        headers["X-Explanation-Convergence-Delta"] = f"{attribution.delta:.6g}"
    return headers
