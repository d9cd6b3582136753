"""The conditional generator's output contract and its training discriminator."""

from __future__ import annotations

import torch

from app.nets import AuxiliaryClassifier, ConditionalDiscriminator, ConditionalGenerator


def test_generator_makes_28x28_images_in_tanh_range() -> None:
    gen = ConditionalGenerator().eval()
    with torch.inference_mode():
        images = gen(torch.randn(5, 100) * 10, torch.arange(5))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1.0 and images.max() <= 1.0


def test_generator_output_depends_on_the_label() -> None:
    gen = ConditionalGenerator().eval()
    z = torch.randn(1, 100).expand(2, 100)
    with torch.inference_mode():
        images = gen(z, torch.tensor([0, 9]))
    assert not torch.allclose(images[0], images[1])


def test_generator_is_deterministic_for_a_seed() -> None:
    gen = ConditionalGenerator().eval()
    labels = torch.tensor([3, 3])
    with torch.inference_mode():
        a = gen(torch.randn(2, 100, generator=torch.Generator().manual_seed(4)), labels)
        b = gen(torch.randn(2, 100, generator=torch.Generator().manual_seed(4)), labels)
    assert torch.equal(a, b)


def test_discriminator_gives_one_logit_per_image() -> None:
    disc = ConditionalDiscriminator().eval()
    with torch.inference_mode():
        logits = disc(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4,)


def test_auxiliary_classifier_reads_the_image_alone() -> None:
    classifier = AuxiliaryClassifier().eval()
    with torch.inference_mode():
        logits = classifier(torch.rand(3, 1, 28, 28) * 2 - 1)
    assert logits.shape == (3, 10)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)  # fakes pass it in training mode too
    assert not any(isinstance(m, norms) for m in classifier.modules())
