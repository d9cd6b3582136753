"""Evaluation jobs on the held-out data, run through each model's own runtime.

Forwards go through the device worker like any batch, so an evaluation sees whole parameter
versions only; if an admin swap lands mid-way, the job fails rather than mix two versions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from app import datasets
from app.errors import BadRequest, InvalidInput, TorchgateError
from app.evaluation import evaluate_classifier, evaluate_gan_consistency, evaluate_loader
from app.serving.jobs import JobFn, Progress
from app.serving.registry import ModelRegistry
from app.serving.runtime import ModelRuntime
from app.serving.store import ControlStore
from app.zoo import ModelKind

IMAGEFOLDER_BATCH = 32


class EvaluationInterrupted(TorchgateError):
    status_code = 409


def _pinned(runtime: ModelRuntime) -> tuple[Callable[..., torch.Tensor], list[int]]:
    """A forward that refuses to mix parameter versions within one evaluation."""
    versions: list[int] = []

    def forward(*inputs: torch.Tensor) -> torch.Tensor:
        outputs, version = runtime.forward_blocking(*inputs)
        if versions and version != versions[0]:
            raise EvaluationInterrupted(
                f"model {runtime.spec.name!r} was reinitialized or reloaded during the "
                "evaluation; start it again."
            )
        versions.append(version)
        return outputs

    return forward, versions


def _stamp(
    result: dict[str, Any], runtime: ModelRuntime, versions: list[int], dataset: str, started: float
) -> dict[str, Any]:
    version = versions[0] if versions else runtime.state.version
    return {
        **result,
        "dataset": dataset,
        "parameters_version": version,
        "parameters_sha256": runtime.sha256_of(version),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(time.perf_counter() - started, 3),
    }


def confined_folder(data_dir: Path, relative: str) -> Path:
    """Resolve ``relative`` inside the data dir; ``..`` or a symlink escaping it is refused."""
    base = data_dir.resolve()
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise BadRequest(
            f"image_folder must be a path relative to the data dir ({base}); got {relative!r}."
        )
    try:  # a name too long for the OS, or with a NUL byte, is the client's mistake too
        target = (base / candidate).resolve()
        is_dir = target.is_relative_to(base) and target.is_dir()
    except (OSError, ValueError):
        raise BadRequest(f"image_folder {relative!r} is not a usable path under {base}.") from None
    if not target.is_relative_to(base):
        raise BadRequest(f"image_folder {relative!r} leads outside the data dir ({base}).")
    if not is_dir:
        raise BadRequest(f"image_folder {relative!r} is not a folder under {base}.")
    return target


def imagenet_targets(folder_classes: list[str], categories: tuple[str, ...]) -> list[int]:
    """Map ImageFolder's class folders to ImageNet indices: numbers, label names, or all 1000
    WordNet ids (whose sorted order is the index order)."""
    if all(name.isdigit() and int(name) < len(categories) for name in folder_classes):
        return [int(name) for name in folder_classes]
    lookup = {label: index for index, label in enumerate(categories)}
    if all(name in lookup for name in folder_classes):
        return [lookup[name] for name in folder_classes]
    if len(folder_classes) == len(categories):
        return list(range(len(categories)))
    raise InvalidInput(
        "the image folder's class folders must be ImageNet class indices (0-999), label names "
        "as in the model's labels, or all 1000 WordNet ids (n01440764, ...)."
    )


class Evaluator:
    """Plans evaluation jobs and remembers each model's latest result."""

    def __init__(self, registry: ModelRegistry, data_dir: Path, store: ControlStore) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self.store = store

    async def latest(self, name: str) -> dict[str, Any] | None:
        """The latest finished evaluation of ``name``, run by whichever process ran it."""
        return await asyncio.to_thread(self.store.get_accuracy, name)

    def _remember(self, name: str, fn: Callable[[Progress], dict[str, Any]]) -> JobFn:
        def run(progress: Progress) -> dict[str, Any]:
            result = fn(progress)
            self.store.set_accuracy(name, result)
            return result

        return run

    def plan(self, name: str, image_folder: str | None = None) -> JobFn:
        """Check the request now (4xx) and return the job to run in the background."""
        runtime = self.registry.runtime(name)
        spec = runtime.spec
        if spec.kind is ModelKind.GENERATOR:
            return self._remember(name, self._gan_job(runtime))
        if spec.pretrained is not None:
            if not image_folder:
                raise BadRequest(
                    f"evaluating {name} needs 'image_folder': an ImageFolder directory "
                    f"(one sub-folder per class) under the data dir {self.data_dir.resolve()}."
                )
            folder = confined_folder(self.data_dir, image_folder)
            return self._remember(name, self._imagefolder_job(runtime, folder))
        return self._remember(name, self._test_split_job(runtime))

    def _test_split_job(self, runtime: ModelRuntime) -> Callable[[Progress], dict[str, Any]]:
        spec = runtime.spec

        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            images, labels = datasets.load_tensors(spec.dataset, "test", self.data_dir)
            if spec.kind is ModelKind.SEQUENCE_CLASSIFIER:
                images = images.squeeze(1)
            forward, versions = _pinned(runtime)
            result = evaluate_classifier(
                forward, images, labels, len(runtime.labels), batch_size=1000, progress=progress
            )
            return _stamp(result, runtime, versions, f"{spec.dataset} test split", started)

        return run

    def _gan_job(self, runtime: ModelRuntime) -> Callable[[Progress], dict[str, Any]]:
        judge = self.registry.runtime("cnn")
        normalization = judge.loaded.manifest.get("normalization") or {}
        mean_std = (float(normalization.get("mean", 0.5)), float(normalization.get("std", 0.5)))

        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            generate, versions = _pinned(runtime)
            classify, _ = _pinned(judge)
            result = evaluate_gan_consistency(
                generate,
                classify,
                per_class=100,
                seed=0,
                num_classes=len(runtime.labels),
                z_dim=int(getattr(runtime.module, "z_dim", 100)),
                normalization=mean_std,
                progress=progress,
            )
            result["judge"] = {"model": "cnn", "parameters_sha256": judge.state.sha256}
            return _stamp(
                result, runtime, versions, "1,000 generated images judged by cnn", started
            )

        return run

    def _imagefolder_job(
        self, runtime: ModelRuntime, folder: Path
    ) -> Callable[[Progress], dict[str, Any]]:
        weights = runtime.spec.pretrained
        assert weights is not None
        base = self.data_dir.resolve()

        def inside_data_dir(path: str) -> bool:
            """Image files only, and no symlink that leads out of the data dir."""
            return path.lower().endswith(IMG_EXTENSIONS) and Path(path).resolve().is_relative_to(
                base
            )

        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            dataset = ImageFolder(
                str(folder), transform=weights.transforms(), is_valid_file=inside_data_dir
            )
            targets = imagenet_targets(dataset.classes, runtime.labels)
            dataset.target_transform = targets.__getitem__
            loader = DataLoader(dataset, batch_size=IMAGEFOLDER_BATCH, num_workers=0)
            forward, versions = _pinned(runtime)
            result = evaluate_loader(
                forward, loader, len(runtime.labels), total=len(dataset), progress=progress
            )
            relative = folder.relative_to(self.data_dir.resolve())
            return _stamp(result, runtime, versions, f"ImageFolder {relative}", started)

        return run
