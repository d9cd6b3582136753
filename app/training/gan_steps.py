"""The GAN's adversarial step, its running statistics, and the generator's moving average."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

REAL_LABEL = 0.9  # one-sided label smoothing: real targets only
EMA_DECAY = 0.999
_BCE = nn.BCEWithLogitsLoss()
_CE = nn.CrossEntropyLoss()


@dataclass(frozen=True)
class AuxiliaryLoss:
    """AC-GAN's auxiliary classification: a classifier trained on the real batches, and the
    weight of its cross-entropy on the fakes (for the labels they were asked to be) in the
    generator's loss."""

    classifier: nn.Module
    optimizer: torch.optim.Optimizer
    weight: float


def ema_average(average: Tensor, current: Tensor, count: Tensor) -> Tensor:
    """Exponential moving average whose decay ramps up to EMA_DECAY.

    A fixed 0.999 from the first step keeps the random initialisation in the average
    for thousands of steps, so early epochs could not be judged.
    """
    decay = min(EMA_DECAY, (1.0 + float(count)) / (10.0 + float(count)))
    return average * decay + current * (1.0 - decay)


@dataclass(frozen=True)
class Step:
    d_loss: float
    g_loss: float
    d_hits: int  # real images called real plus fakes called fake
    n: int
    aux_hits: int = 0  # fakes the auxiliary classifier put in the class they were asked for


@dataclass
class EpochStats:
    """Running means of one epoch's adversarial steps."""

    d_sum: float = 0.0
    g_sum: float = 0.0
    hits: int = 0
    aux_hits: int = 0
    seen: int = 0
    auxiliary: bool = False

    def add(self, step: Step) -> None:
        self.d_sum += step.d_loss * step.n
        self.g_sum += step.g_loss * step.n
        self.hits += step.d_hits
        self.aux_hits += step.aux_hits
        self.seen += step.n

    def means(self) -> dict[str, float]:
        means = {
            "d_loss": self.d_sum / self.seen,
            "g_loss": self.g_sum / self.seen,
            "d_accuracy": self.hits / (2 * self.seen),
        }
        if self.auxiliary:
            means["aux_fake_accuracy"] = self.aux_hits / self.seen
        return means

    def text(self) -> str:
        return " ".join(f"{k} {v:.4f}" for k, v in self.means().items())


def adversarial_step(
    gen: nn.Module,
    disc: nn.Module,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    real: Tensor,
    labels: Tensor,
    z: Tensor,
    fake_labels: Tensor,
    auxiliary: AuxiliaryLoss | None = None,
) -> Step:
    """One discriminator update (and one of the auxiliary classifier, on the real batch), then
    one generator update, on the same fake batch."""
    opt_g, opt_d = optimizers
    bce = _BCE
    fake = gen(z, fake_labels)
    if auxiliary is not None:
        auxiliary.optimizer.zero_grad(set_to_none=True)
        _CE(auxiliary.classifier(real), labels).backward()
        auxiliary.optimizer.step()

    opt_d.zero_grad(set_to_none=True)
    real_logits = disc(real, labels)
    fake_logits = disc(fake.detach(), fake_labels)  # no generator gradients in this step
    d_loss = bce(real_logits, torch.full_like(real_logits, REAL_LABEL)) + bce(
        fake_logits, torch.zeros_like(fake_logits)
    )
    d_loss.backward()
    opt_d.step()

    opt_g.zero_grad(set_to_none=True)
    g_logits = disc(fake, fake_labels)
    g_loss = bce(g_logits, torch.ones_like(g_logits))
    aux_hits = 0
    if auxiliary is not None:  # its own gradients from this loss are cleared before its step
        class_logits = auxiliary.classifier(fake)
        g_loss = g_loss + auxiliary.weight * _CE(class_logits, fake_labels)
        aux_hits = int((class_logits.argmax(1) == fake_labels).sum())
    g_loss.backward()
    opt_g.step()
    hits = int((real_logits > 0).sum() + (fake_logits < 0).sum())
    return Step(d_loss.item(), g_loss.item(), hits, labels.numel(), aux_hits)
