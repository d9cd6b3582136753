"""Build a spec's network on the meta device and give it its weights, once, on its device.

Building on ``meta`` skips the random initialisation that the weights would overwrite, and
``load_state_dict(assign=True)`` adopts the loaded tensors instead of copying them, so the load
path never holds two copies of the weights.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision.models
from torch import nn

from app.errors import WeightsUnavailable
from app.serving.inputs import FashionInput, ImageNetInput, InputCodec
from app.serving.weights import (
    ensure_pretrained_file,
    load_state_dict_file,
    read_manifest,
    verified_checkpoint,
    verify_hash_prefix,
)
from app.zoo import ModelKind, ModelSpec

# Models load on several threads at once; two of them importing modules of one package (cnn's
# and lstm's both pull in app.nets) can trip Python's import deadlock detection, which fails a
# load at random. One import at a time.
_IMPORT_LOCK = threading.Lock()

StateReader = Callable[[], dict[str, torch.Tensor]]


@dataclass
class LoadedModel:
    """A network in eval mode on its device, with what serving needs to feed and reload it."""

    module: nn.Module
    labels: tuple[str, ...]
    codec: InputCodec | None
    source: str
    read_state: StateReader
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightsLocation:
    weights_dir: Path
    checkpoint_dir: Path
    download: bool
    verify: bool


def _materialize(
    build: Callable[[], nn.Module], state: dict[str, torch.Tensor], device: torch.device
) -> nn.Module:
    with torch.device("meta"):
        module = build()
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsUnavailable(f"the weights do not fit the network: {exc}") from exc
    leftovers = [name for name, t in module.state_dict().items() if t.is_meta]
    if leftovers:
        raise WeightsUnavailable(f"the weights leave tensors uninitialised: {leftovers[:5]}")
    return module.to(device).eval().requires_grad_(False)


def _load_pretrained(spec: ModelSpec, where: WeightsLocation, device: torch.device) -> LoadedModel:
    weights = spec.pretrained
    assert weights is not None
    path = ensure_pretrained_file(weights, where.weights_dir, where.download, where.verify)

    def read_state() -> dict[str, torch.Tensor]:
        if where.verify:
            verify_hash_prefix(path)
        return load_state_dict_file(path)

    labels = tuple(weights.meta["categories"])
    module = _materialize(
        lambda: torchvision.models.get_model(spec.name, weights=None, num_classes=len(labels)),
        load_state_dict_file(path),
        device,
    )
    return LoadedModel(
        module=module,
        labels=labels,
        codec=ImageNetInput(weights.transforms()),
        source=str(path),
        read_state=read_state,
    )


def _net_builder(spec: ModelSpec, manifest: dict[str, Any]) -> Callable[[], nn.Module]:
    """The manifest names the class, but only inside the spec's own module."""
    architecture = manifest.get("architecture") or {}
    with _IMPORT_LOCK:
        module = importlib.import_module(str(spec.net_module))
    cls = getattr(module, str(architecture.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise WeightsUnavailable(
            f"manifest {spec.name}.json names class {architecture.get('class')!r}, "
            f"which {spec.net_module} does not define."
        )
    kwargs = dict(architecture.get("kwargs") or {})
    return lambda: cls(**kwargs)


def _load_trained(spec: ModelSpec, where: WeightsLocation, device: torch.device) -> LoadedModel:
    manifest = read_manifest(where.checkpoint_dir, spec.name)

    def read_state() -> dict[str, torch.Tensor]:
        return load_state_dict_file(verified_checkpoint(where.checkpoint_dir, manifest))

    path = verified_checkpoint(where.checkpoint_dir, manifest)
    module = _materialize(_net_builder(spec, manifest), load_state_dict_file(path), device)
    normalization = manifest.get("normalization") or {}
    codec = None
    if spec.kind is not ModelKind.GENERATOR:
        codec = FashionInput(
            mean=float(normalization.get("mean", 0.5)),
            std=float(normalization.get("std", 0.5)),
            sequence=spec.kind is ModelKind.SEQUENCE_CLASSIFIER,
        )
    return LoadedModel(
        module=module,
        labels=tuple(str(label) for label in manifest.get("classes", ())),
        codec=codec,
        source=str(path),
        read_state=read_state,
        manifest=manifest,
    )


def load_model(spec: ModelSpec, where: WeightsLocation, device: torch.device) -> LoadedModel:
    """Load ``spec`` onto ``device``; WeightsUnavailable carries a reason a person can act on."""
    if spec.pretrained is not None:
        return _load_pretrained(spec, where, device)
    return _load_trained(spec, where, device)
