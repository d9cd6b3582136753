from pathlib import Path

import pytest

from app.errors import BadRequest
from app.serving.evaluations import confined_folder


def test_folder_inside_the_data_dir_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    assert confined_folder(tmp_path, "imagenet/val") == (tmp_path / "imagenet" / "val").resolve()


@pytest.mark.parametrize("path", ["../etc", "/etc", "a/../../etc", "missing"])
def test_paths_outside_or_missing_are_refused(tmp_path: Path, path: str) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(BadRequest):
        confined_folder(tmp_path, path)


def test_symlinks_that_escape_the_data_dir_are_refused(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "escape").symlink_to(outside)
    with pytest.raises(BadRequest, match="outside the data dir"):
        confined_folder(data, "escape")
