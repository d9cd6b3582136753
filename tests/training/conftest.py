"""Training tests need a Fashion-MNIST training split: Debian's (CI installs it), or else the
test split shipped in data/fashion-mnist standing in for it, so the README's test command
passes on a machine without the package."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SHIPPED = REPO_ROOT / "data" / "fashion-mnist"
_FILES = ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty data dir (the loader finds Debian's files and unpacks them into it), or one
    whose training files are the shipped test split's, when Debian's are not installed."""
    directory = tmp_path_factory.mktemp("data")
    if all((DEBIAN / f"train-{name}").is_file() for name in _FILES):
        return directory
    logging.getLogger(__name__).warning(
        "%s has no training split (apt-get install -y dataset-fashion-mnist): the shipped "
        "test split stands in for it",
        DEBIAN,
    )
    staged = directory / "fashion-mnist"
    staged.mkdir()
    for name in _FILES:
        shutil.copy(SHIPPED / f"t10k-{name}", staged / f"train-{name}")
        shutil.copy(SHIPPED / f"t10k-{name}", staged / f"t10k-{name}")
    return directory
