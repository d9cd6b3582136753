"""Score the served GAN with the independent judge: class consistency and diversity.

The served cnn picks the GAN's best epoch and scores it in the admin API; a generator
tuned against one classifier can learn that classifier's blind spots. This judge is
another architecture (:class:`ResNetJudge`), trained on its own, so its figures are an
independent check. Consistency alone can be bought with mode collapse (one perfect shoe
per class), hence the diversity figure beside it: the mean pairwise distance between the
judge's features of the generated images of a class, against the same measure on the
real test images of that class.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from app.datasets import load_tensors
from app.evaluation import evaluate_gan_consistency
from app.training.artifacts import ManifestError, load_net, write_manifest
from app.training.plots import plot_judge

__all__ = ["judge_gan", "mean_pairwise_distance"]

log = logging.getLogger(__name__)

DIVERSITY = "mean pairwise L2 distance of the judge's pooled features within a class"


def mean_pairwise_distance(features: Tensor) -> float:
    """Mean Euclidean distance over all pairs of distinct rows of ``features`` [N, D]."""
    n = features.shape[0]
    if n < 2:
        raise ValueError("The diversity of fewer than two images is undefined.")
    return float(torch.cdist(features, features).sum() / (n * (n - 1)))


@torch.inference_mode()
def judge_gan(
    out: Path,
    judge: Path | None = None,
    data_dir: Path = Path("data"),
    per_class: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the judge's figures into ``<out>/gan.json`` (``independent_judge``) and plot them
    to ``<out>/gan-judge.png``; the generator's weights and other figures stay as they are."""
    manifest_path, judge_path = out / "gan.json", judge or out / "judge.json"
    if not judge_path.is_file():
        raise FileNotFoundError(
            f"{judge_path} does not exist; run `python -m app train judge` first."
        )
    generator, manifest = load_net(manifest_path)
    net, judge_manifest = load_net(judge_path)
    dataset = str(manifest.get("dataset", "fashion-mnist"))
    if judge_manifest.get("dataset") != dataset or not hasattr(net, "features"):
        raise ManifestError(f"{judge_path} is not a {dataset} judge with features().")
    norm = judge_manifest["normalization"]
    features: list[Tensor] = []

    def classify(x: Tensor) -> Tensor:
        """The judge's logits, keeping its features: one call per class, in class order."""
        features.append(net.features(x))
        return net.head(features[-1])

    num_classes = len(manifest["classes"])
    scored = evaluate_gan_consistency(
        generator,
        classify,
        per_class=per_class,
        seed=seed,
        num_classes=num_classes,
        z_dim=int(manifest["input"]["z_dim"]),
        normalization=(float(norm["mean"]), float(norm["std"])),
    )
    images, labels = load_tensors(dataset, "test", data_dir)
    generated = [mean_pairwise_distance(f) for f in features]
    real = [mean_pairwise_distance(net.features(images[labels == c])) for c in range(num_classes)]
    figures = {
        "manifest": judge_path.name,
        "sha256": judge_manifest["sha256"],
        "architecture": judge_manifest["architecture"]["class"],
        "test_accuracy": judge_manifest.get("test_accuracy"),
        "per_class": per_class,
        "seed": seed,
        "n": scored["n"],
        "consistency": scored["consistency"],
        "per_class_consistency": scored["per_class"],
        "classes_produced": scored["classes_produced"],
        "confusion_matrix": scored["confusion_matrix"],
        "diversity": {
            "measure": DIVERSITY,
            "generated": generated,
            "real": real,
            "ratio": [g / r for g, r in zip(generated, real, strict=True)],
            "generated_mean": sum(generated) / num_classes,
            "real_mean": sum(real) / num_classes,
        },
        "command": f"python -m app train gan-judge --out {out} --per-class {per_class}",
    }
    manifest["independent_judge"] = figures
    write_manifest(manifest, manifest_path)
    plot_judge(
        manifest["classes"],
        scored["per_class"],
        manifest.get("per_class_consistency"),
        generated,
        real,
        out / "gan-judge.png",
    )
    log.info(
        "gan judged by %s (test accuracy %s): consistency %.4f, min class %.2f, diversity %.3f "
        "generated vs %.3f real; wrote %s",
        judge_path,
        figures["test_accuracy"],
        scored["consistency"],
        min(scored["per_class"]),
        figures["diversity"]["generated_mean"],
        figures["diversity"]["real_mean"],
        manifest_path,
    )
    return figures
