"""Kind-specific facts live in the specs: the generator's latent size."""

from __future__ import annotations

import json

import pytest

from app.nets import ConditionalGenerator
from app.zoo import SPECS
from tests.conftest import REPO_ROOT


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
