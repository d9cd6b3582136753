"""The supervised training loop: AdamW + OneCycleLR, validation each epoch, best epoch kept.

With ``ema_decay`` an exponential moving average of the weights (BatchNorm statistics
included) is kept as well; it is what is validated, selected and saved.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from app.evaluation import evaluate_classifier
from app.training.data import SplitData, augment, batches, erase, num_batches
from app.training.progress import training_progress

__all__ = ["FitResult", "LoopSettings", "ema_average", "fit_classifier"]

log = logging.getLogger(__name__)

# Adapts a normalized image batch [N, 1, 28, 28] to what the network reads.
InputAdapter = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LoopSettings:
    """Optimisation choices beyond the common options; recorded in the manifest."""

    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    flip: bool = True
    shift: int = 2
    grad_clip: float | None = None
    channels_last: bool = True
    erase: float = 0.0  # probability of random erasing, per image (0: off)
    ema_decay: float | None = None  # keep, select and save an EMA of the weights (None: off)


@dataclass
class FitResult:
    """The best epoch's weights, the per-epoch curves (epoch 0 = before training, with
    no training figures) and every step's training loss."""

    best_state: dict[str, Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: dict[str, list[float | None]] = field(default_factory=dict)
    step_losses: list[float] = field(default_factory=list)


def ema_average(decay: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """AveragedModel's ``avg_fn`` for an EMA whose decay ramps up to ``decay``.

    A fixed decay from the first step would keep the random initialisation in the
    average for thousands of steps, so the early epochs' EMA could not be validated.
    """

    def average(averaged: Tensor, current: Tensor, count: Tensor) -> Tensor:
        d = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
        return averaged * d + current * (1.0 - d)

    return average


def _forward_fn(model: nn.Module, adapt: InputAdapter, device: torch.device) -> Callable:
    def forward(x: Tensor) -> Tensor:
        return model(adapt(x.to(device)))

    return forward


def _validate(
    model: nn.Module, data: tuple[Tensor, Tensor], adapt: InputAdapter, device: torch.device
) -> dict:
    model.eval()
    with torch.inference_mode():
        result = evaluate_classifier(_forward_fn(model, adapt, device), *data, num_classes=10)
    model.train()
    return result


def fit_classifier(
    model: nn.Module,
    data: SplitData,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    adapt: InputAdapter,
    settings: LoopSettings,
    show_progress: bool = True,
) -> FitResult:
    """Train ``model`` and return the state_dict of its best validation epoch (on the CPU): of
    the weights' EMA when ``settings.ema_decay`` is set, else of the weights themselves."""
    model.to(device)
    if settings.channels_last and device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    images, labels = data.train
    steps = num_batches(labels.numel(), batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=settings.weight_decay)
    # OneCycleLR divides by the length of its warm-up phase, which a run of under 8 steps
    # (a tiny --limit) would make zero; such a run simply stops before the schedule ends.
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(epochs * steps, 8), pct_start=0.25
    )
    rng = torch.Generator().manual_seed(seed)
    ema = (
        None
        if settings.ema_decay is None
        else AveragedModel(model, avg_fn=ema_average(settings.ema_decay), use_buffers=True)
    )
    kept = model if ema is None else ema.module  # what is validated for selection and saved

    first = _validate(model, data.val, adapt, device)
    history: dict[str, list[float | None]] = {
        "train_loss": [None],
        "train_accuracy": [None],
        "val_loss": [first["loss"]],
        "val_accuracy": [first["accuracy"]],
        "lr": [optimizer.param_groups[0]["lr"]],
    }
    if ema is not None:
        history.update(ema_val_loss=[first["loss"]], ema_val_accuracy=[first["accuracy"]])
    best = FitResult(copy.deepcopy(kept.state_dict()), 0, first["accuracy"], history)

    model.train()
    with training_progress(show_progress) as progress:
        for epoch in range(1, epochs + 1):
            task = progress.add_task(f"epoch {epoch}/{epochs}", total=steps, metrics="")
            loss_sum, correct, seen = 0.0, 0, 0
            for x, y in batches(images, labels, batch_size, rng):
                x = augment(x, rng, flip=settings.flip, shift=settings.shift)
                x = erase(x, rng, settings.erase).to(device)
                y = y.to(device)
                if settings.channels_last and device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                logits = model(adapt(x))
                loss = F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
                loss.backward()
                if settings.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                schedule.step()
                if ema is not None:
                    ema.update_parameters(model)
                best.step_losses.append(loss.item())
                loss_sum += best.step_losses[-1] * y.numel()
                correct += int((logits.argmax(1) == y).sum())
                seen += y.numel()
                progress.update(
                    task, advance=1, metrics=f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f}"
                )
            val = _validate(model, data.val, adapt, device)
            history["train_loss"].append(loss_sum / seen)
            history["train_accuracy"].append(correct / seen)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            history["lr"].append(optimizer.param_groups[0]["lr"])
            selected = val
            if ema is not None:
                selected = _validate(ema.module, data.val, adapt, device)
                history["ema_val_loss"].append(selected["loss"])
                history["ema_val_accuracy"].append(selected["accuracy"])
            progress.update(
                task,
                metrics=f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f} "
                f"val_loss {val['loss']:.4f} val_acc {val['accuracy']:.4f}",
            )
            log.info(
                "epoch %d/%d train_loss %.4f train_acc %.4f val_loss %.4f val_acc %.4f%s",
                epoch,
                epochs,
                loss_sum / seen,
                correct / seen,
                val["loss"],
                val["accuracy"],
                "" if ema is None else f" ema_val_acc {selected['accuracy']:.4f}",
            )
            if selected["accuracy"] > best.best_val_accuracy or best.best_epoch == 0:
                best.best_state = copy.deepcopy(kept.state_dict())
                best.best_epoch = epoch
                best.best_val_accuracy = selected["accuracy"]
    model.eval()
    best.best_state = {k: v.detach().cpu().contiguous() for k, v in best.best_state.items()}
    return best
