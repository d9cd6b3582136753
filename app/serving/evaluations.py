"""Evaluation jobs on the held-out data, run through each model's own runtime.

Forwards go through the device worker like any batch, so an evaluation sees whole parameter
versions only; if an admin swap lands mid-way, the job fails rather than mix two versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app import datasets
from app.errors import BadRequest, Conflict, ForwardTimeout
from app.evaluation import evaluate_classifier, evaluate_gan_consistency, evaluate_loader
from app.imagenet import imagenet_classes
from app.serving.image_batches import SKIPPED_SHOWN, image_batches
from app.serving.imagenet_layouts import ImageNetFolder, scan_imagenet_folder
from app.serving.inputs import FashionInput
from app.serving.jobs import JobFn, Progress
from app.serving.registry import ModelRegistry
from app.serving.runtime import ModelRuntime
from app.serving.store import ControlStore
from app.zoo import ModelKind

SUBSET_NOTE = (
    "{keys} rank only the logits of the folder's {k} classes, as results on ImageNet subsets "
    "(Imagenette, Imagewoof) are usually quoted; top1/top5 rank all 1000 classes and compare "
    "with the published ImageNet-1k figures."
)


class EvaluationInterrupted(Conflict):
    """The parameters changed under a running evaluation: its figures would mix versions."""


def _pinned(
    runtime: ModelRuntime, progress: Progress, timeout_s: float
) -> tuple[Callable[..., torch.Tensor], list[int]]:
    """A forward that refuses to mix parameter versions within one evaluation, gives up after
    ``timeout_s``, and tells the job it is alive (or stops it there, once it was ended)."""
    versions: list[int] = []

    def forward(*inputs: torch.Tensor) -> torch.Tensor:
        try:
            outputs, version = runtime.forward_blocking(*inputs, timeout_s=timeout_s)
        except TimeoutError:
            raise ForwardTimeout(
                f"a forward of {runtime.spec.name!r} did not return within {timeout_s:g} s "
                "(TORCHGATE_JOB_FORWARD_TIMEOUT_S); the device worker may be stuck."
            ) from None
        progress.beat()
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


class Evaluator:
    """Plans evaluation jobs and remembers each model's latest result."""

    def __init__(self, registry: ModelRegistry, data_dir: Path, store: ControlStore) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self.store = store
        self._forward_timeout_s = registry.settings.job_forward_timeout_s

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
                    f"evaluating {name} needs 'image_folder': a folder under the data dir "
                    f"{self.data_dir.resolve()} with class folders (named by WordNet id, index "
                    "or label), or the flat ILSVRC2012 validation images and their ground truth."
                )
            folder = confined_folder(self.data_dir, image_folder)
            found = scan_imagenet_folder(folder, self.data_dir.resolve(), runtime.labels)
            return self._remember(name, self._imagenet_job(runtime, folder, found))
        return self._remember(name, self._test_split_job(runtime))

    def _test_split_job(self, runtime: ModelRuntime) -> Callable[[Progress], dict[str, Any]]:
        spec = runtime.spec

        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            images, labels = datasets.load_tensors(spec.dataset, "test", self.data_dir)
            if spec.kind is ModelKind.SEQUENCE_CLASSIFIER:
                images = images.squeeze(1)
            forward, versions = _pinned(runtime, progress, self._forward_timeout_s)
            result = evaluate_classifier(
                forward, images, labels, len(runtime.labels), batch_size=1000, progress=progress
            )
            return _stamp(result, runtime, versions, f"{spec.dataset} test split", started)

        return run

    def _gan_job(self, runtime: ModelRuntime) -> Callable[[Progress], dict[str, Any]]:
        judge = self.registry.runtime("cnn")
        codec = judge.loaded.codec  # built from the cnn's manifest at load: its normalization
        assert isinstance(codec, FashionInput), "the judge is the Fashion-MNIST cnn"
        mean_std = (codec.mean, codec.std)

        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            generate, versions = _pinned(runtime, progress, self._forward_timeout_s)
            classify, _ = _pinned(judge, progress, self._forward_timeout_s)
            result = evaluate_gan_consistency(
                generate,
                classify,
                per_class=100,
                seed=0,
                num_classes=len(runtime.labels),
                z_dim=runtime.spec.latent_size,
                normalization=mean_std,
                progress=progress,
            )
            result["judge"] = {"model": "cnn", "parameters_sha256": judge.state.sha256}
            return _stamp(
                result, runtime, versions, "1,000 generated images judged by cnn", started
            )

        return run

    def _imagenet_job(
        self, runtime: ModelRuntime, folder: Path, found: ImageNetFolder
    ) -> Callable[[Progress], dict[str, Any]]:
        weights = runtime.spec.pretrained
        assert weights is not None
        transform = weights.transforms()
        max_pixels = self.registry.settings.max_image_pixels
        relative = folder.relative_to(self.data_dir.resolve())
        total = len(found.samples)
        subset = found.classes if found.is_subset else None

        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            skipped: list[str] = []
            forward, versions = _pinned(runtime, progress, self._forward_timeout_s)
            batches = image_batches(found.samples, transform, max_pixels, skipped)
            with contextlib.closing(batches):
                result = evaluate_loader(
                    forward,
                    batches,
                    len(runtime.labels),
                    total=total,
                    progress=lambda done, _: progress(min(done + len(skipped), total), total),
                    subset=subset,
                )
            progress(total, total)
            result = self._imagenet_result(result, runtime, found, skipped, folder)
            dataset = (
                f"ILSVRC2012 validation images {relative}"
                if found.classes is None
                else f"ImageFolder {relative}"
            )
            return _stamp(result, runtime, versions, dataset, started)

        return run

    @staticmethod
    def _imagenet_result(
        result: dict[str, Any],
        runtime: ModelRuntime,
        found: ImageNetFolder,
        skipped: list[str],
        folder: Path,
    ) -> dict[str, Any]:
        """Name the layout, the skipped images and, for a subset, each class."""
        subset_rows = result.pop("subset_per_class", None)
        classes = found.classes or sorted({target for _, target in found.samples})
        out: dict[str, Any] = {
            "n": result["n"],
            "top1": result["accuracy"],
            **result,
            "layout": found.layout,
            "classes": len(classes),
            "skipped": {
                "count": len(skipped),
                "first": [os.path.relpath(path, folder) for path in skipped[:SKIPPED_SHOWN]],
            },
        }
        if found.ground_truth is not None:
            out["ground_truth"] = found.ground_truth
        if subset_rows is not None:
            wnids = imagenet_classes().wnids
            out["per_class"] = [
                {
                    "index": row["index"],
                    "wnid": wnids[row["index"]],
                    "label": runtime.labels[row["index"]],
                    **row,
                }
                for row in subset_rows
            ]
            keys = "subset_top1/subset_top5" if "subset_top5" in out else "subset_top1"
            out["note"] = SUBSET_NOTE.format(keys=keys, k=len(classes))
        return out
