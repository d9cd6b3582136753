"""Training tests need Debian's Fashion-MNIST training split; they fail (not skip) without it."""

from __future__ import annotations

from pathlib import Path

import pytest

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty data dir: the loader finds Debian's files and unpacks them into it."""
    missing = [
        name
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
        if not (DEBIAN / name).is_file()
    ]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found in {DEBIAN}; "
            "run `apt-get install -y dataset-fashion-mnist` (CI installs it)."
        )
    return tmp_path_factory.mktemp("data")
