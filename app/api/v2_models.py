"""What each model takes and gives under the Open Inference Protocol, and how a v2 request runs.

A v2 request (REST or gRPC) goes through the model's runtime exactly like v1 (same decode pool,
batching queue, worker and top-k head), so every protocol answers the same input with the same
numbers, and every answer names the parameter version that produced it. The shapes come from
the model's spec (app/zoo.py); only the tensor names and datatypes are the protocol's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.api.explain_options import explain_options
from app.api.payloads import check_batch_size, decode_base64
from app.api.v2_tensors import BYTES, OutputTensor, Tensor
from app.errors import BadRequest, InvalidInput
from app.serving.heads import oldest_version, rank
from app.serving.outputs import Output
from app.serving.runtime import ModelRuntime
from app.zoo import ModelSpec

FP32, INT64 = "FP32", "INT64"
TENSOR, IMAGE, PROBABILITIES, LABELS = "input", "image", "probabilities", "labels"
ATTRIBUTIONS = "attributions"  # on request only: an explanation (app/serving/explain.py)
LATENT, LABEL = "latent", "label"
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class TensorSpec:
    """A tensor in model metadata; ``accepts`` relaxes dimensions the model can vary (H, W)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[int, ...] | None = None

    def metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class OutputRequest:
    """A requested output: ``classification`` (Triton's extension) or ``top_k`` for labels;
    ``explain``: the attributions' parameters (method, steps, baseline, target)."""

    name: str
    classification: int | None = None
    top_k: int | None = None
    explain: tuple[tuple[str, object], ...] = ()


def signature_of(runtime: ModelRuntime) -> Signature:
    """The model's inputs and outputs, with -1 for the batch and other variable dimensions."""
    return _signature(runtime.spec, len(runtime.labels))


@functools.cache  # asked twice per request; a model's spec and class count never change
def _signature(spec: ModelSpec, classes: int) -> Signature:
    if not spec.is_classifier:
        return Signature(
            inputs=(
                TensorSpec(LATENT, FP32, (-1, spec.latent_size)),
                TensorSpec(LABEL, INT64, (-1,)),
            ),
            outputs=(TensorSpec(IMAGE, FP32, (-1, *spec.output_shape)),),
        )
    accepts = (-1, *spec.input_accepts) if spec.input_accepts is not None else None
    outputs = [TensorSpec(PROBABILITIES, FP32, (-1, classes)), TensorSpec(LABELS, BYTES, (-1, -1))]
    if spec.explain is not None:  # shaped like the model's input tensor
        outputs.append(TensorSpec(ATTRIBUTIONS, FP32, accepts or (-1, *spec.input_shape)))
    return Signature(
        inputs=(
            TensorSpec(TENSOR, FP32, (-1, *spec.input_shape), accepts=accepts),
            TensorSpec(IMAGE, BYTES, (-1,)),
        ),
        outputs=tuple(outputs),
    )


def _check(tensor: Tensor, spec: TensorSpec, limit: int) -> int:
    """The batch size, after checking datatype and shape against the signature."""
    if tensor.datatype != spec.datatype:
        raise BadRequest(f"input '{tensor.name}' must be {spec.datatype}; got {tensor.datatype}.")
    expected = spec.accepts or spec.shape
    fits = len(tensor.shape) == len(expected) and all(
        want in (-1, got) for got, want in zip(tensor.shape, expected, strict=True)
    )
    if not fits:
        shape = ",".join(str(d) for d in tensor.shape)
        wanted = ",".join(str(d) for d in spec.shape)
        raise BadRequest(f"input '{tensor.name}' must have shape [{wanted}]; got [{shape}].")
    batch = tensor.shape[0]
    if batch < 1:
        raise BadRequest(f"input '{tensor.name}' is an empty batch; send at least one item.")
    check_batch_size(batch, limit)
    return batch


def _pick(tensors: Sequence[Tensor], signature: Signature, model: str) -> dict[str, Tensor]:
    known = {spec.name for spec in signature.inputs}
    by_name = {tensor.name: tensor for tensor in tensors}
    unknown = sorted(set(by_name) - known)
    if unknown:
        raise BadRequest(
            f"model '{model}' has no input(s) {unknown}; its inputs are {sorted(known)}."
        )
    return by_name


def _blobs(tensor: Tensor) -> list[bytes]:
    """Encoded files; in JSON (which cannot carry raw bytes) each element is base64."""
    assert isinstance(tensor.data, list)
    if tensor.binary:
        return tensor.data
    return [
        decode_base64(item, f"input '{tensor.name}' element {position} (base64 in JSON)")
        for position, item in enumerate(tensor.data)
    ]


async def _classifier_samples(
    runtime: ModelRuntime, tensors: Sequence[Tensor], signature: Signature, limit: int
) -> list[torch.Tensor]:
    by_name = _pick(tensors, signature, runtime.spec.name)
    if len(by_name) != 1:
        raise BadRequest(
            f"send exactly one input to model '{runtime.spec.name}': '{TENSOR}' "
            f"(a {FP32} tensor) or '{IMAGE}' ({BYTES}, encoded image files)."
        )
    (tensor,) = by_name.values()
    tensor_spec, image_spec = signature.inputs
    if tensor.name == IMAGE:
        _check(tensor, image_spec, limit)
        return await runtime.decode_images(_blobs(tensor))
    _check(tensor, tensor_spec, limit)
    assert isinstance(tensor.data, np.ndarray)
    return runtime.samples_from_array(tensor.data)


async def _generator_outputs(
    runtime: ModelRuntime, tensors: Sequence[Tensor], signature: Signature, limit: int
) -> list[Output]:
    by_name = _pick(tensors, signature, runtime.spec.name)
    missing = [spec.name for spec in signature.inputs if spec.name not in by_name]
    if missing:
        raise BadRequest(
            f"model '{runtime.spec.name}' needs inputs '{LATENT}' ({FP32} [N,"
            f"{runtime.spec.latent_size}]) and '{LABEL}' ({INT64} [N]); missing {missing}."
        )
    latent, label = by_name[LATENT], by_name[LABEL]
    latent_spec, label_spec = signature.inputs
    if _check(latent, latent_spec, limit) != _check(label, label_spec, limit):
        raise BadRequest(f"'{LATENT}' and '{LABEL}' must have the same batch size.")
    assert isinstance(latent.data, np.ndarray) and isinstance(label.data, np.ndarray)
    if not np.isfinite(latent.data).all():
        raise InvalidInput(f"'{LATENT}' contains NaN or infinite values; send finite numbers.")
    classes = len(runtime.labels)
    if label.data.min() < 0 or label.data.max() >= classes:
        raise BadRequest(f"'{LABEL}' values must be class indices 0..{classes - 1}.")
    rows = torch.from_numpy(latent.data).unbind(0)
    targets = torch.from_numpy(label.data).unbind(0)
    return await runtime.infer(list(zip(rows, targets, strict=True)))


def _checked(output: OutputRequest, classes: int) -> OutputRequest:
    """Output parameters are checked before the forward, so a bad one costs no compute."""
    if output.classification is not None and output.name != PROBABILITIES:
        raise BadRequest(f"'classification' applies to output '{PROBABILITIES}' only.")
    if output.top_k is not None and output.name != LABELS:
        raise BadRequest(f"'top_k' applies to output '{LABELS}' only.")
    if output.explain and output.name != ATTRIBUTIONS:
        keys = ", ".join(key for key, _ in output.explain)
        raise BadRequest(f"{keys} apply to output '{ATTRIBUTIONS}' only.")
    for what, value in (("classification", output.classification), ("top_k", output.top_k)):
        if value is not None and not 1 <= value <= classes:
            raise BadRequest(f"{what} must be between 1 and {classes}; got {value}.")
    return output


def _requested(
    outputs: Sequence[OutputRequest], signature: Signature, classes: int, top_k: int | None
) -> list[OutputRequest]:
    if top_k is not None and not 1 <= top_k <= classes:
        raise BadRequest(f"top_k must be between 1 and {classes}; got {top_k}.")
    if not outputs:
        defaults = [OutputRequest(signature.outputs[0].name)]
        if top_k is not None and len(signature.outputs) > 1:
            defaults.append(OutputRequest(LABELS, top_k=top_k))
        return defaults
    known = [spec.name for spec in signature.outputs]
    names = [output.name for output in outputs]
    for name in names:
        if name not in known:
            raise BadRequest(f"there is no output '{name}'; the outputs are {known}.")
    if len(set(names)) != len(names):
        raise BadRequest("each output may be requested once.")
    return [_checked(output, classes) for output in outputs]


def _encode(
    output: OutputRequest, stacked: np.ndarray, labels: Sequence[str], top_k: int | None
) -> OutputTensor:
    if output.name == LABELS:
        k = output.top_k or top_k or min(DEFAULT_TOP_K, len(labels))
    elif output.classification is not None:
        k = output.classification
    else:
        return OutputTensor(output.name, FP32, stacked.shape, stacked)
    ranked = rank(stacked, labels, k)  # v1's head: the same order, ties included
    if output.name == LABELS:
        items = [p.label for per_row in ranked for p in per_row]
    else:
        items = [f"{p.probability:.6f}:{p.index}:{p.label}" for per_row in ranked for p in per_row]
    return OutputTensor(output.name, BYTES, (stacked.shape[0], k), items)


async def infer_v2(
    runtime: ModelRuntime,
    tensors: Sequence[Tensor],
    outputs: Sequence[OutputRequest],
    top_k: int | None,
    limit: int,
) -> tuple[list[OutputTensor], int]:
    """The requested outputs, in request order, and the parameter version that produced them.

    ``top_k`` (a request parameter) adds the top-k label names to the default outputs and is
    the default k of a requested ``labels`` output.
    """
    signature = signature_of(runtime)
    requested = _requested(outputs, signature, max(1, len(runtime.labels)), top_k)
    explaining = next((output for output in requested if output.name == ATTRIBUTIONS), None)
    if explaining is not None:
        return await _explained(runtime, tensors, signature, limit, requested, explaining, top_k)
    if runtime.spec.is_classifier:
        samples = await _classifier_samples(runtime, tensors, signature, limit)
        results = await runtime.infer([(sample,) for sample in samples])
    else:
        results = await _generator_outputs(runtime, tensors, signature, limit)
    # numpy, not torch.stack: this runs on the event loop (see app/serving/heads.py)
    if len(results) == 1:  # the common case, without stack's generality
        stacked = results[0].tensor.numpy()[np.newaxis]
    else:
        stacked = np.stack([result.tensor.numpy() for result in results])
    stacked = stacked.astype(np.float32, copy=False)
    encoded = [_encode(output, stacked, runtime.labels, top_k) for output in requested]
    return encoded, oldest_version(results)


async def _explained(
    runtime: ModelRuntime,
    tensors: Sequence[Tensor],
    signature: Signature,
    limit: int,
    requested: Sequence[OutputRequest],
    explaining: OutputRequest,
    top_k: int | None,
) -> tuple[list[OutputTensor], int]:
    """Every output of an explained request from the explanation's own forward (its
    probabilities, one parameter version), attributions shaped like the model's input."""
    options = explain_options(dict(explaining.explain), runtime)  # before any decoding
    if runtime.explainer is None:
        raise BadRequest(f"model '{runtime.spec.name}' cannot be explained here.")
    samples = await _classifier_samples(runtime, tensors, signature, limit)
    explained = await runtime.explainer.explain(samples, options)
    attributions = explained.attributions
    stacked = np.stack([a.probabilities for a in attributions]).astype(np.float32, copy=False)
    encoded = []
    for output in requested:
        if output.name == ATTRIBUTIONS:
            values = np.stack([a.values for a in attributions])
            encoded.append(OutputTensor(ATTRIBUTIONS, FP32, values.shape, values))
        else:
            encoded.append(_encode(output, stacked, runtime.labels, top_k))
    return encoded, explained.version
