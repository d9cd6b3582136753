"""The service's wheel is the service (STYLE rule 15): no bench, no device tools, no tests; the
bench's own wheel is the bench alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.repo import REPO_ROOT

pytestmark = pytest.mark.integration

# What a checkout holds beside the code (builds, caches, datasets, checkpoints): not copied.
ANYWHERE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__")
TOP_LEVEL = {".pytest_cache", ".ruff_cache", ".whl", "data", "models"}


def _not_source(folder: str, names: list[str]) -> set[str]:
    ignored = set(ANYWHERE(folder, names))
    return ignored | (TOP_LEVEL & set(names) if Path(folder) == REPO_ROOT else set())


BUILD = "import sys\nfrom setuptools import build_meta\nprint(build_meta.build_wheel(sys.argv[1]))"


def _wheel_names(project: Path, out: Path) -> list[str]:
    """Build ``project``'s wheel with its own configuration (a pristine copy, so no earlier
    ``build/`` folder can leak into it) and list what it holds."""
    completed = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    wheel = out / completed.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("checkout") / "torchgate"
    shutil.copytree(REPO_ROOT, copy, ignore=_not_source)
    return copy


def test_the_service_wheel_holds_the_app_and_nothing_else(checkout: Path, tmp_path: Path) -> None:
    names = _wheel_names(checkout, tmp_path)
    tops = {name.split("/", 1)[0] for name in names}
    assert "app/__init__.py" in names and "app/__main__.py" in names
    assert "app/bench_handoff.py" in names and "app/data/imagenet_wnids.txt" in names
    assert {top for top in tops if not top.endswith(".dist-info")} == {"app"}
    assert not [name for name in names if "bench/" in name or "torchgate_bench" in name]
    assert not [name for name in names if name.startswith(("tools/", "tests/", "bench/"))]


def test_the_bench_wheel_holds_the_bench_and_its_peer_scripts(
    checkout: Path, tmp_path: Path
) -> None:
    names = _wheel_names(checkout / "bench", tmp_path)
    tops = {name.split("/", 1)[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"torchgate_bench"}
    assert "torchgate_bench/__main__.py" in names and "torchgate_bench/results.py" in names
    assert "torchgate_bench/peers/torchserve_handler.py" in names
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    assert metadata.startswith("torchgate_bench-")
