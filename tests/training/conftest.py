"""Training tests need a Fashion-MNIST training split: Debian's (CI installs it), or else the
test split shipped in data/fashion-mnist standing in for it, so the README's test command
passes on a machine without the package."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.helpers.datasets import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_FILES,
    SHIPPED_FASHION_MNIST,
)


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty data dir (the loader finds Debian's files and unpacks them into it), or one
    whose training files are the shipped test split's, when Debian's are not installed."""
    directory = tmp_path_factory.mktemp("data")
    if all((DEBIAN_FASHION_MNIST / f"train-{name}").is_file() for name in FASHION_MNIST_FILES):
        return directory
    logging.getLogger(__name__).warning(
        "%s has no training split (apt-get install -y dataset-fashion-mnist): the shipped "
        "test split stands in for it",
        DEBIAN_FASHION_MNIST,
    )
    staged = directory / "fashion-mnist"
    staged.mkdir()
    for name in FASHION_MNIST_FILES:
        shutil.copy(SHIPPED_FASHION_MNIST / f"t10k-{name}", staged / f"train-{name}")
        shutil.copy(SHIPPED_FASHION_MNIST / f"t10k-{name}", staged / f"t10k-{name}")
    return directory
