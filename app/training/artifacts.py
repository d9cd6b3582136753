"""Checkpoints and their JSON manifests: write, verify and rebuild.

A checkpoint is a plain state_dict saved with ``torch.save`` (loadable with
``weights_only=True``); its manifest names the class and constructor kwargs that
rebuild the network, the checkpoint's sha256 and how it was trained and scored.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from app.serving.weights import file_sha256
from app.training.options import TrainOptions

__all__ = [
    "ManifestError",
    "architecture",
    "build_manifest",
    "build_net",
    "constructor_kwargs",
    "load_net",
    "read_manifest",
    "save_checkpoint",
    "sha256_file",
    "write_manifest",
]

# Manifests may only name classes from these modules, so a manifest cannot import
# arbitrary code.
_NET_MODULES = ("app.nets.",)


class ManifestError(ValueError):
    """A manifest that is malformed, names a forbidden class or mismatches its checkpoint."""


sha256_file = file_sha256  # one implementation, shared with the server's checkpoint check


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary sibling, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Tensor], path: Path) -> str:
    """Save a CPU, contiguous state_dict and return the file's sha256."""
    plain = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    _atomic_write(path, lambda tmp: torch.save(plain, tmp))
    return sha256_file(path)


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    _atomic_write(path, lambda tmp: tmp.write_text(text))


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"Cannot read manifest {path}: {exc}") from exc
    for key in ("name", "architecture", "checkpoint", "sha256"):
        if key not in manifest:
            raise ManifestError(f"Manifest {path} lacks {key!r}; retrain the model to rewrite it.")
    return manifest


def architecture(model: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The manifest's recipe to rebuild ``model``: module, class and constructor kwargs."""
    cls = type(model)
    return {"module": cls.__module__, "class": cls.__qualname__, "kwargs": kwargs}


def constructor_kwargs(
    cls: type[nn.Module], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every keyword default of ``cls``, updated by ``overrides``, as JSON-ready values.

    Recording all of them (not just the overrides) keeps a manifest valid even if a
    default changes later.
    """
    params = inspect.signature(cls.__init__).parameters.values()
    kwargs = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    unknown = set(overrides or {}) - set(kwargs)
    if unknown:
        raise ValueError(f"{cls.__name__} has no keyword argument(s) {sorted(unknown)}.")
    kwargs.update(overrides or {})
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def build_net(arch: dict[str, Any]) -> nn.Module:
    """Instantiate the (untrained) network a manifest's ``architecture`` describes.

    For ``torchvision.models`` the class is a builder name such as ``resnet101``,
    called with ``weights=None``.
    """
    module_name, cls_name = arch.get("module", ""), arch.get("class", "")
    kwargs = dict(arch.get("kwargs", {}))
    if module_name == "torchvision.models":
        from torchvision import models

        return models.get_model(cls_name, weights=None, **kwargs)
    if not module_name.startswith(_NET_MODULES):
        raise ManifestError(
            f"Manifest architecture module {module_name!r} is neither under app.nets "
            "nor torchvision.models."
        )
    cls = getattr(importlib.import_module(module_name), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ManifestError(f"{module_name}.{cls_name} is not an nn.Module class.")
    return cls(**kwargs)


def load_net(manifest_path: Path, verify: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a network from its manifest and load its checkpoint, in eval mode on the CPU."""
    manifest = read_manifest(manifest_path)
    checkpoint = Path(manifest_path).parent / manifest["checkpoint"]
    if verify and sha256_file(checkpoint) != manifest["sha256"]:
        raise ManifestError(
            f"{checkpoint} does not match the sha256 in {manifest_path}; retrain or restore it."
        )
    model = build_net(manifest["architecture"])
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval(), manifest


def build_manifest(
    *,
    name: str,
    model: nn.Module,
    kwargs: dict[str, Any],
    checkpoint: Path,
    sha256: str,
    options: TrainOptions,
    device: torch.device,
    wall_time_s: float,
    command: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The fields every manifest has, followed by the trainer's own ``fields``.

    ``command`` defaults to ``python -m app train <name> ...`` from ``options``.
    """
    return {
        "name": name,
        "architecture": architecture(model, kwargs),
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint": checkpoint.name,
        "sha256": sha256,
        "dataset": options.dataset,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "seed": options.seed,
        "limit": options.limit,
        **fields,
        "wall_time_s": round(wall_time_s, 1),
        "device": str(device),
        "torch_version": torch.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or options.command(name),
    }
