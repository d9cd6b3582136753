"""Precision trials: a candidate precision built beside the serving model, measured against
float32 on the model's evaluation set, and promoted only when it keeps the accuracy.

The job copies the float32 master between two batches (so it measures one parameter version),
converts the copy, runs both copies on the same batches (app/comparison.py) and, when the drop
is within the tolerance, appends a ``precision`` record: every process and replica then
switches, and the job's result says whether they all did (``converged``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app import datasets
from app.comparison import compare_classifiers, compare_generators, judge
from app.errors import BadRequest
from app.serving.evaluations import confined_folder
from app.serving.fanout import FanOut
from app.serving.forward import ModelForward
from app.serving.image_batches import image_batches
from app.serving.imagenet_layouts import IMAGE_SUFFIXES, scan_imagenet_folder
from app.serving.inputs import FashionInput
from app.serving.jobs import JobFn, Progress
from app.serving.precision import FLOAT32, check_precision
from app.serving.registry import ModelRegistry
from app.serving.runtime import ModelRuntime
from app.zoo import ModelKind

FASHION_BATCH = 500
FASHION_TEST_SIZE = 10_000  # Fashion-MNIST's (and MNIST's) test split
GAN_PER_CLASS = 100
PROMOTION_WAIT_S = 120.0

Change = Callable[[str, dict[str, Any]], FanOut]  # (model, record args) -> the fan-out


@dataclass(frozen=True)
class PrecisionPlan:
    """What the operator asked for (validated by the route's schema)."""

    dtype: str
    max_accuracy_drop: float = 0.005
    image_folder: str | None = None  # ImageNet models: a labelled folder (as /evaluate takes)
    inputs_folder: str | None = None  # ImageNet models: images without labels -> agreement
    limit: int | None = None  # the first N samples of the set (N per class for the GAN: N/10)


Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor | None]]]


class PrecisionTrials:
    """Plans precision jobs (400 at submit for what cannot run) and promotes their winners."""

    def __init__(self, registry: ModelRegistry, data_dir: Path, change: Change) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self._change = change
        self._timeout_s = registry.settings.job_forward_timeout_s

    def plan(self, name: str, plan: PrecisionPlan) -> JobFn:
        """Check the request now (4xx) and return the job to run in the background."""
        runtime = self.registry.runtime(name)
        check_precision(runtime.module, runtime.device, plan.dtype, name)
        if runtime.spec.kind is ModelKind.GENERATOR:
            self.registry.runtime("cnn")  # the judge must serve here (409/404 otherwise)
            return self._job(runtime, plan, "", 0, None)
        if runtime.spec.pretrained is not None:
            return self._imagenet(runtime, plan)
        total = min(plan.limit or FASHION_TEST_SIZE, FASHION_TEST_SIZE)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
            """Read in the job, not at submit: the split is 10,000 images."""
            spec = runtime.spec
            images, labels = datasets.load_tensors(spec.dataset, "test", self.data_dir)
            images, labels = images[:total], labels[:total]
            if spec.kind is ModelKind.SEQUENCE_CLASSIFIER:
                images = images.squeeze(1)
            for start in range(0, labels.shape[0], FASHION_BATCH):
                yield images[start : start + FASHION_BATCH], labels[start : start + FASHION_BATCH]

        return self._job(runtime, plan, f"{runtime.spec.dataset} test split", total, batches)

    def _imagenet(self, runtime: ModelRuntime, plan: PrecisionPlan) -> JobFn:
        name = runtime.spec.name
        if bool(plan.image_folder) == bool(plan.inputs_folder):
            raise BadRequest(
                f"a precision trial of {name} needs exactly one of 'image_folder' (labelled "
                "images under the data dir, laid out as for /evaluate: accuracy is compared) or "
                "'inputs_folder' (any images: top-1 agreement with float32 is compared)."
            )
        base = self.data_dir.resolve()
        if plan.image_folder:
            folder = confined_folder(self.data_dir, plan.image_folder)
            samples = scan_imagenet_folder(folder, base, runtime.labels).samples
            dataset, labelled = f"ImageFolder {folder.relative_to(base)}", True
        else:
            folder = confined_folder(self.data_dir, str(plan.inputs_folder))
            samples = [(str(p), 0) for p in sorted(folder.rglob("*")) if _is_image(p)]
            if not samples:
                raise BadRequest(f"inputs_folder {plan.inputs_folder!r} holds no images.")
            dataset, labelled = f"unlabelled images {folder.relative_to(base)}", False
        samples = samples[: plan.limit]
        weights = runtime.spec.pretrained
        assert weights is not None
        transform, max_pixels = weights.transforms(), self.registry.settings.max_image_pixels

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
            for images, labels in image_batches(samples, transform, max_pixels, []):
                yield images, labels if labelled else None

        return self._job(runtime, plan, dataset, len(samples), batches)

    def _job(
        self,
        runtime: ModelRuntime,
        plan: PrecisionPlan,
        dataset: str,
        total: int,
        batches: Batches | None,
    ) -> JobFn:
        def run(progress: Progress) -> dict[str, Any]:
            started = time.perf_counter()
            master, version = runtime.snapshot_blocking(self._timeout_s)
            baseline = _forward(master, runtime)
            candidate = baseline if plan.dtype == FLOAT32 else _forward(master, runtime)
            candidate.set_precision(plan.dtype)
            if batches is None:
                comparison, where = self._generator(runtime, plan, baseline, candidate, progress)
            else:
                comparison = compare_classifiers(
                    _call(baseline), _call(candidate), batches(), len(runtime.labels), total,
                    progress,
                )  # fmt: skip
                where = dataset
            return self._decide(runtime, plan, comparison, where, version, started)

        return run

    def _generator(
        self,
        runtime: ModelRuntime,
        plan: PrecisionPlan,
        baseline: ModelForward,
        candidate: ModelForward,
        progress: Progress,
    ) -> tuple[dict[str, Any], str]:
        """The GAN: both generators' samples judged by a float32 copy of the cnn."""
        judge_runtime = self.registry.runtime("cnn")
        codec = judge_runtime.loaded.codec
        assert isinstance(codec, FashionInput), "the judge is the Fashion-MNIST cnn"
        judge_copy, _ = judge_runtime.snapshot_blocking(self._timeout_s)
        per_class = max(1, plan.limit // 10) if plan.limit else GAN_PER_CLASS
        comparison = compare_generators(
            _call(baseline),
            _call(candidate),
            _call(_forward(judge_copy, judge_runtime)),
            per_class=per_class,
            seed=0,
            num_classes=len(runtime.labels),
            z_dim=runtime.spec.latent_size,
            normalization=(codec.mean, codec.std),
            progress=progress,
        )
        comparison["judge"] = {"model": "cnn", "parameters_sha256": judge_runtime.state.sha256}
        return comparison, f"{per_class * len(runtime.labels):,} generated images judged by cnn"

    def _decide(
        self,
        runtime: ModelRuntime,
        plan: PrecisionPlan,
        comparison: dict[str, Any],
        dataset: str,
        version: int,
        started: float,
    ) -> dict[str, Any]:
        metric = comparison["metric"]
        promoted, drop, reason = judge(
            comparison["baseline"], comparison["candidate"], metric, plan.max_accuracy_drop,
            comparison["n"],
        )  # fmt: skip
        result: dict[str, Any] = {
            "model": runtime.spec.name,
            "dtype": plan.dtype,
            "serving_before": runtime.forward.precision,
            "dataset": dataset,
            **comparison,
            "drop": drop,
            "max_accuracy_drop": plan.max_accuracy_drop,
            "parameters_version": version,
            "parameters_sha256": runtime.sha256_of(version),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if promoted and runtime.state.version != version:
            promoted, reason = (
                False,
                (
                    f"the parameters changed during the trial (v{version} -> "
                    f"v{runtime.state.version}); start it again"
                ),
            )
        result["promoted"], result["reason"] = promoted, reason
        result["duration_seconds"] = round(time.perf_counter() - started, 3)
        if promoted:
            fan_out = self._change(
                runtime.spec.name, {"dtype": plan.dtype, "measured": _measured(result)}
            )
            result["promotion"] = _promotion(fan_out)
        return result


def _forward(module: torch.nn.Module, runtime: ModelRuntime) -> ModelForward:
    """An eager forward of its own over ``module``: the serving path's casts, no graph."""
    return ModelForward(module, runtime.device, runtime.spec.is_classifier, runtime.forward.example)


def _call(forward: ModelForward) -> Callable[..., torch.Tensor]:
    return lambda *inputs: forward.run(inputs, postprocess=False)


def _is_image(path: Path) -> bool:
    return (
        path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
    )


def _measured(result: dict[str, Any]) -> dict[str, Any]:
    """What every process shows for the promoted precision (``precision_accuracy``)."""
    metric = result["metric"]
    return {
        "dtype": result["dtype"],
        "metric": metric,
        metric: result["candidate"].get(metric),
        "float32": result["baseline"].get(metric),
        "drop": result["drop"],
        "agreement": result["agreement"],
        "throughput_ratio": result["throughput_ratio"],
        "n": result["n"],
        "dataset": result["dataset"],
        "measured_at": result["measured_at"],
    }


def _promotion(fan_out: FanOut) -> dict[str, Any]:
    return {
        "parameters_version": fan_out.record.version,
        "converged": fan_out.converged,
        "processes": [asdict(report) for report in fan_out.reports],
        "failed_records": [asdict(failed) for failed in fan_out.failed_records],
    }


def blocking_change(
    change: Callable[[str, str, dict[str, Any]], Any], loop: asyncio.AbstractEventLoop
) -> Change:
    """``ParameterSync.change`` called from a job's thread on the event loop it belongs to."""

    def call(model: str, args: dict[str, Any]) -> FanOut:
        future = asyncio.run_coroutine_threadsafe(change(model, "precision", args), loop)
        return future.result(timeout=PROMOTION_WAIT_S)

    return call
