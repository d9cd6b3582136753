from pathlib import Path

import pytest

from app.errors import BadRequest, InvalidInput
from app.serving.evaluations import confined_folder, imagenet_targets

CATEGORIES = tuple(f"label {i}" for i in range(1000))


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


def test_class_folders_map_to_imagenet_indices() -> None:
    assert imagenet_targets(["0", "207", "999"], CATEGORIES) == [0, 207, 999]
    assert imagenet_targets(["label 5", "label 9"], CATEGORIES) == [5, 9]
    wnids = [f"n{i:08d}" for i in range(1000)]
    assert imagenet_targets(wnids, CATEGORIES) == list(range(1000))
    with pytest.raises(InvalidInput, match="WordNet"):
        imagenet_targets(["cats", "dogs"], CATEGORIES)
