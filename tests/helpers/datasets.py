"""Where the Fashion-MNIST files are: Debian's package (the training split CI installs) and the
test split shipped in data/fashion-mnist."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.repo import REPO_ROOT

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SHIPPED_FASHION_MNIST = REPO_ROOT / "data" / "fashion-mnist"
FASHION_MNIST_FILES = ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")
