"""One adversarial step, with and without AC-GAN's auxiliary classifier."""

from __future__ import annotations

import copy

import pytest
import torch

from app.nets import AuxiliaryClassifier, ConditionalDiscriminator, ConditionalGenerator
from app.training.gan_steps import AuxiliaryLoss, EpochStats, adversarial_step

N = 16


def _parts(seed: int = 0) -> tuple:
    torch.manual_seed(seed)
    gen, disc = ConditionalGenerator(channels=(16, 8)), ConditionalDiscriminator(channels=(8, 16))
    optimizers = (torch.optim.Adam(gen.parameters()), torch.optim.Adam(disc.parameters()))
    real = torch.rand(N, 1, 28, 28) * 2 - 1
    labels = torch.arange(N) % 10
    return gen, disc, optimizers, real, labels, torch.randn(N, 100), labels.flip(0)


def _changed(before: torch.nn.Module, after: torch.nn.Module) -> bool:
    return any(
        not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True)
    )


def test_without_the_classifier_only_the_two_players_learn() -> None:
    gen, disc, optimizers, *batch = _parts()
    gen_before, disc_before = copy.deepcopy(gen), copy.deepcopy(disc)
    step = adversarial_step(gen, disc, optimizers, *batch)
    assert _changed(gen_before, gen) and _changed(disc_before, disc)
    assert step.n == N and 0 <= step.d_hits <= 2 * N and step.aux_hits == 0


def test_the_classifier_learns_from_real_images_and_steers_the_generator() -> None:
    gen, disc, optimizers, *batch = _parts()
    classifier = AuxiliaryClassifier()
    auxiliary = AuxiliaryLoss(classifier, torch.optim.Adam(classifier.parameters(), 1e-3), 1.0)
    plain_gen = copy.deepcopy(gen)
    plain_disc = copy.deepcopy(disc)
    plain_optimizers = (
        torch.optim.Adam(plain_gen.parameters()),
        torch.optim.Adam(plain_disc.parameters()),
    )
    classifier_before = copy.deepcopy(classifier)
    step = adversarial_step(gen, disc, optimizers, *batch, auxiliary)
    adversarial_step(plain_gen, plain_disc, plain_optimizers, *batch)
    assert _changed(classifier_before, classifier)
    assert _changed(plain_gen, gen)  # the auxiliary loss moved the generator elsewhere
    assert 0 <= step.aux_hits <= N


@pytest.mark.parametrize("auxiliary", [False, True])
def test_epoch_means_report_the_classifier_only_when_it_runs(auxiliary: bool) -> None:
    gen, disc, optimizers, *batch = _parts()
    stats = EpochStats(auxiliary=auxiliary)
    classifier = AuxiliaryClassifier()
    loss = AuxiliaryLoss(classifier, torch.optim.Adam(classifier.parameters()), 0.5)
    stats.add(adversarial_step(gen, disc, optimizers, *batch, loss if auxiliary else None))
    means = stats.means()
    assert ("aux_fake_accuracy" in means) is auxiliary
    assert 0.0 <= means["d_accuracy"] <= 1.0
