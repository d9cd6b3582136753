"""The trained cnn that judges the GAN: loaded for training, and used to score the committed
generator again after the cnn was retrained."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from app.evaluation import evaluate_gan_consistency
from app.training.artifacts import load_net, write_manifest

__all__ = ["load_judge", "rejudge_gan"]

log = logging.getLogger(__name__)


def load_judge(path: Path, dataset: str) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """The cnn that scores the generator, and its manifest: it must exist and have been trained
    on the GAN's dataset, or its consistency scores would mean nothing."""
    if not path.is_file():
        raise FileNotFoundError(
            f"The GAN is judged by the trained cnn, but {path} does not exist; "
            f"run `python -m app train cnn` first."
        )
    cnn, manifest = load_net(path)
    if manifest.get("dataset") != dataset:
        raise ValueError(f"{path} was trained on {manifest.get('dataset')}, not {dataset}.")
    return cnn, manifest


def rejudge_gan(out: Path, judge: Path | None = None) -> dict[str, Any]:
    """Score the committed generator again with a new cnn (after the cnn was retrained).

    The training epoch stays the one the previous judge chose (recorded as
    ``selection_judge``); the reported consistency, per-class shares and ``judge`` become the
    new cnn's, computed exactly as training computes them (seed 0, 100 per class).
    """
    manifest_path = out / "gan.json"
    judge_path = judge or out / "cnn.json"
    generator, manifest = load_net(manifest_path)
    cnn, judge_manifest = load_judge(judge_path, str(manifest.get("dataset", "fashion-mnist")))
    previous = manifest.get("judge") or {}
    new_judge = {"manifest": judge_path.name, "sha256": judge_manifest["sha256"]}
    if previous and previous != new_judge:
        manifest["selection_judge"] = manifest.get("selection_judge", previous)
    norm = judge_manifest["normalization"]
    final = evaluate_gan_consistency(
        generator,
        cnn,
        per_class=100,
        seed=0,
        num_classes=len(manifest["classes"]),
        z_dim=int(manifest["input"]["z_dim"]),
        normalization=(float(norm["mean"]), float(norm["std"])),
    )
    manifest.update(
        judge=new_judge,
        consistency=final["consistency"],
        per_class_consistency=final["per_class"],
        classes_produced=final["classes_produced"],
        all_classes_produced=final["all_classes_produced"],
        consistency_n=final["n"],
        rejudge_command=f"python -m app train gan-rejudge --out {out}",
    )
    write_manifest(manifest, manifest_path)
    log.info(
        "gan judged by %s: consistency %.4f (%d classes produced); wrote %s",
        judge_path,
        final["consistency"],
        final["classes_produced"],
        manifest_path,
    )
    return manifest
