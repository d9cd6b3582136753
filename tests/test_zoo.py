"""Kind-specific facts live in the specs: latent size and the input and output shapes."""

from __future__ import annotations

import json

import pytest
import torch

from app.nets import ConditionalGenerator, FashionCNN, RowLSTM
from app.zoo import SPECS
from tests.helpers.repo import REPO_ROOT


def test_the_gan_spec_gives_the_latent_size_of_the_served_generator() -> None:
    latent = SPECS["gan"].latent_size
    assert latent == ConditionalGenerator().z_dim
    manifest = REPO_ROOT / "models" / "gan.json"
    if manifest.is_file():
        kwargs = json.loads(manifest.read_text())["architecture"].get("kwargs", {})
        assert kwargs.get("z_dim", latent) == latent


def test_a_classifier_has_no_latent_size() -> None:
    with pytest.raises(ValueError, match="no latent"):
        _ = SPECS["cnn"].latent_size


def _concrete(shape: tuple[int, ...], batch: int = 2) -> tuple[int, ...]:
    """A shape the spec allows: the batch first, each variable dimension at its widest (28)."""
    return (batch, *(28 if dimension == -1 else dimension for dimension in shape))


@pytest.mark.parametrize(("name", "net"), [("cnn", FashionCNN), ("lstm", RowLSTM)])
def test_a_classifier_takes_the_input_shape_its_spec_declares(name: str, net: type) -> None:
    spec = SPECS[name]
    with torch.no_grad():
        logits = net().eval()(torch.zeros(_concrete(spec.input_shape)))
    assert logits.shape == (2, 10)


def test_the_generator_gives_the_output_shape_its_spec_declares() -> None:
    spec = SPECS["gan"]
    with torch.no_grad():
        images = ConditionalGenerator().eval()(
            torch.zeros(2, spec.latent_size), torch.tensor([0, 1])
        )
    assert images.shape == _concrete(spec.output_shape)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet101"])
def test_an_imagenet_spec_declares_its_weights_crop(name: str) -> None:
    spec = SPECS[name]
    assert spec.pretrained is not None
    crop = spec.pretrained.transforms().crop_size
    assert spec.input_shape == (3, crop[0], crop[0])
    assert spec.input_accepts == (3, -1, -1)
