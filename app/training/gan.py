"""Train the class-conditional GAN, choosing the epoch the trained cnn judges most on-class.

One adversarial step is app/training/gan_steps.py; the judge, and scoring the committed
generator again with a retrained one, app/training/gan_rejudge.py.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from app.datasets import class_names, load_split
from app.evaluation import evaluate_gan_consistency
from app.nets import AuxiliaryClassifier, ConditionalDiscriminator, ConditionalGenerator
from app.training.artifacts import (
    build_manifest,
    constructor_kwargs,
    load_net,
    save_checkpoint,
    write_manifest,
)
from app.training.classifiers import TrainResult
from app.training.data import batches, num_batches
from app.training.gan_rejudge import load_judge
from app.training.gan_steps import (
    EMA_DECAY,
    REAL_LABEL,
    AuxiliaryLoss,
    EpochStats,
    adversarial_step,
    ema_average,
)
from app.training.options import TrainOptions, resolve_device, seed_everything
from app.training.plots import plot_curves, plot_grid
from app.training.progress import training_progress

__all__ = ["train_gan"]

log = logging.getLogger(__name__)

# The epoch is chosen on noise drawn with this seed; the reported score uses seed 0
# (evaluate_gan_consistency's default, as the admin API does), other noise.
SELECTION_SEED = 1
AUX_LR = 1e-3  # the auxiliary classifier learns the classes at a classifier's pace


def _scaled_images(dataset: str, data_dir: Path, limit: int | None) -> tuple[Tensor, Tensor]:
    """Training images in [-1, 1] (the generator's tanh range) and their labels."""
    ds = load_split(dataset, "train", data_dir)
    images, labels = ds.data.unsqueeze(1).float() / 127.5 - 1.0, ds.targets.long()
    return (images[:limit], labels[:limit]) if limit is not None else (images, labels)


def train_gan(
    options: TrainOptions,
    judge: Path | None = None,
    net_kwargs: dict[str, Any] | None = None,
    show_progress: bool = True,
    *,
    aux_weight: float = 0.0,
) -> TrainResult:
    """Train generator + discriminator; write ``gan.pt`` (generator only) and its artifacts.

    ``judge`` is the cnn manifest (default ``<out>/cnn.json``); every epoch the
    exponential moving average of the generator is scored by the cnn and the best
    epoch is kept. ``aux_weight`` > 0 adds AC-GAN's auxiliary classification loss.
    """
    options = dataclasses.replace(
        options, extra_args={**options.extra_args, "aux-weight": f"{aux_weight:g}"}
    )
    seed_everything(options.seed)
    device = resolve_device(options.device)
    out = Path(options.out)
    judge_path = judge or out / "cnn.json"
    cnn, judge_manifest = load_judge(judge_path, options.dataset)
    norm = judge_manifest["normalization"]
    normalization = (norm["mean"], norm["std"])
    images, labels = _scaled_images(options.dataset, options.data_dir, options.limit)

    kwargs = constructor_kwargs(ConditionalGenerator, net_kwargs)
    gen = ConditionalGenerator(**kwargs).to(device)
    disc = ConditionalDiscriminator(num_classes=kwargs["num_classes"]).to(device)
    ema = AveragedModel(gen, avg_fn=ema_average, use_buffers=True)
    opt_g = torch.optim.Adam(gen.parameters(), lr=options.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=options.lr, betas=(0.5, 0.999))
    auxiliary = None
    if aux_weight > 0:
        classifier = AuxiliaryClassifier(num_classes=kwargs["num_classes"]).to(device)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=AUX_LR, betas=(0.5, 0.999))
        auxiliary = AuxiliaryLoss(classifier, optimizer, aux_weight)
    steps = num_batches(labels.numel(), options.batch_size)
    schedules = [
        torch.optim.lr_scheduler.CosineAnnealingLR(
            o, T_max=options.epochs * steps, eta_min=0.1 * options.lr
        )
        for o in (opt_g, opt_d)
    ]
    rng = torch.Generator().manual_seed(options.seed)
    z_dim, num_classes = kwargs["z_dim"], kwargs["num_classes"]

    def score(model: nn.Module) -> float:
        """The selection score: consistency on noise that the reported score never sees."""
        model.eval()
        return evaluate_gan_consistency(
            lambda z, y: model(z.to(device), y.to(device)).cpu(),
            cnn,
            per_class=100,
            seed=SELECTION_SEED,
            num_classes=num_classes,
            z_dim=z_dim,
            normalization=normalization,
        )["consistency"]

    history: dict[str, list[float | None]] = {
        "d_loss": [None],
        "g_loss": [None],
        "d_accuracy": [None],
        **({"aux_fake_accuracy": [None]} if auxiliary else {}),
        "consistency": [score(ema.module)],
    }
    best_state, best_epoch, best_score = copy.deepcopy(ema.module.state_dict()), 0, -1.0
    d_steps: list[float] = []
    start = time.perf_counter()
    with training_progress(show_progress) as progress:
        for epoch in range(1, options.epochs + 1):
            gen.train()
            disc.train()
            task = progress.add_task(f"epoch {epoch}/{options.epochs}", total=steps, metrics="")
            stats = EpochStats(auxiliary=auxiliary is not None)
            for real, y in batches(images, labels, options.batch_size, rng):
                z = torch.randn(y.numel(), z_dim, generator=rng)
                y_fake = torch.randint(0, num_classes, (y.numel(),), generator=rng)
                step = adversarial_step(
                    gen,
                    disc,
                    (opt_g, opt_d),
                    real.to(device),
                    y.to(device),
                    z.to(device),
                    y_fake.to(device),
                    auxiliary,
                )
                ema.update_parameters(gen)
                for schedule in schedules:
                    schedule.step()
                d_steps.append(step.d_loss)
                stats.add(step)
                progress.update(task, advance=1, metrics=stats.text())
            consistency = score(ema.module)
            for key, value in stats.means().items():
                history[key].append(value)
            history["consistency"].append(consistency)
            progress.update(task, metrics=f"{stats.text()} consistency {consistency:.3f}")
            log.info(
                "epoch %d/%d %s consistency %.4f", epoch, options.epochs, stats.text(), consistency
            )
            if consistency > best_score:
                best_state, best_epoch, best_score = (
                    copy.deepcopy(ema.module.state_dict()),
                    epoch,
                    consistency,
                )
    wall = time.perf_counter() - start

    checkpoint = out / "gan.pt"
    sha = save_checkpoint(best_state, checkpoint)
    manifest = build_manifest(
        name="gan",
        model=gen,
        kwargs=kwargs,
        checkpoint=checkpoint,
        sha256=sha,
        options=options,
        device=device,
        wall_time_s=wall,
        task="generation",
        input={
            "z_dim": z_dim,
            "labels": num_classes,
            "output_shape": [1, 28, 28],
            "output_range": [-1.0, 1.0],
        },
        classes=class_names(options.dataset),
        normalization=judge_manifest["normalization"],
        optimizer={"name": "Adam", "betas": [0.5, 0.999], "lr_g": options.lr, "lr_d": options.lr},
        schedule={"name": "CosineAnnealingLR", "eta_min": 0.1 * options.lr},
        training={
            "loss": "BCEWithLogitsLoss",
            "real_label": REAL_LABEL,
            "ema_decay": EMA_DECAY,
            "discriminator": "ConditionalDiscriminator",
            "auxiliary": (
                {"classifier": "AuxiliaryClassifier", "weight": aux_weight, "lr": AUX_LR}
                if auxiliary
                else None
            ),
            "train_size": labels.numel(),
            "selection": f"cnn consistency, 100 per class, seed {SELECTION_SEED}",
        },
        judge={"manifest": judge_path.name, "sha256": judge_manifest["sha256"]},
        best_epoch=best_epoch,
        val_consistency=best_score,
    )
    manifest_path = out / "gan.json"
    write_manifest(manifest, manifest_path)
    rebuilt, _ = load_net(manifest_path)
    final = evaluate_gan_consistency(
        rebuilt,
        cnn,
        per_class=100,
        seed=0,
        num_classes=num_classes,
        z_dim=z_dim,
        normalization=normalization,
    )
    manifest.update(
        consistency=final["consistency"],
        per_class_consistency=final["per_class"],
        classes_produced=final["classes_produced"],
        all_classes_produced=final["all_classes_produced"],
        consistency_n=final["n"],
        history=history,
    )
    write_manifest(manifest, manifest_path)
    plot_curves(history, out / "gan-curves.png", f"gan on {options.dataset}")
    plot_grid(rebuilt, manifest["classes"], z_dim, out / "gan-samples.png")
    log.info(
        "gan: best epoch %d, consistency %.4f (%d classes produced), %.0f s; wrote %s",
        best_epoch,
        final["consistency"],
        final["classes_produced"],
        wall,
        manifest_path,
    )
    return TrainResult(manifest, manifest_path, history, d_steps)
