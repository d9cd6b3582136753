"""A folder of AOTInductor packages kept between test runs.

Compiling the cnn, lstm and gan packages takes about a minute of CPU. Packages are found by a
key naming everything they depend on (model, CPU instruction set, torch version, the weights'
sha256, the graph options: app/serving/compiled_cache.py), so a cache kept between runs can
never hand a test a package built for other weights or another torch. The folder is also named
after the source of the networks and of the code that builds packages, so a change there is
compiled afresh. A fresh clone (CI) has no cache and compiles once per run; with pytest's
cache off, a temporary folder stands in.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.helpers.repo import REPO_ROOT

SERVING = REPO_ROOT / "app" / "serving"
BUILDING_CODE = ("aot.py", "aot_builds.py", "compiled_cache.py", "graphs.py")


def _code_digest() -> str:
    """Of the code that exports and compiles, and of the networks themselves."""
    digest = hashlib.sha256()
    files = [SERVING / name for name in BUILDING_CODE]
    for path in files + sorted((REPO_ROOT / "app" / "nets").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def package_cache_dir(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.pytest_cache/d/aot-packages/<digest of the building code>`` (older digests removed),
    or a fresh temporary folder when pytest's cache is off (``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("compiled")
    root = cache.mkdir("aot-packages")
    current = root / _code_digest()
    for stale in root.iterdir():
        if stale != current and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)  # another worker may be doing the same
    current.mkdir(exist_ok=True)
    return current
