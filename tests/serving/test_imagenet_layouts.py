"""Each ImageNet folder layout maps its images to the right class index, and a folder that
cannot be evaluated is refused with a sentence that says why (no pixels are read here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.models import AlexNet_Weights

from app.errors import BadRequest
from app.imagenet import imagenet_classes
from app.serving.imagenet_layouts import ImageNetFolder, scan_imagenet_folder

CATEGORIES = tuple(AlexNet_Weights.DEFAULT.meta["categories"])
SOLUTION_HEADER = "ImageId,PredictionString\n"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _scan(data: Path, relative: str) -> ImageNetFolder:
    return scan_imagenet_folder(data / relative, data.resolve(), CATEGORIES)


def _targets(found: ImageNetFolder, folder: Path) -> dict[str, int]:
    return {Path(path).relative_to(folder).as_posix(): target for path, target in found.samples}


def test_a_wordnet_id_subset_maps_each_folder_to_its_index(tmp_path: Path) -> None:
    folder = tmp_path / "imagenette"
    _touch(folder / "n01440764" / "a.JPEG")
    _touch(folder / "n01440764" / "nested" / "b.png")
    _touch(folder / "n03888257" / "c.jpg")
    _touch(folder / "n03888257" / "notes.txt")  # not an image: not listed
    _touch(folder / "n03888257" / ".hidden.jpg")
    _touch(folder / ".cache" / "d.jpg")
    found = _scan(tmp_path, "imagenette")
    assert found.layout == "wordnet-id folders"
    assert _targets(found, folder) == {
        "n01440764/a.JPEG": 0,
        "n01440764/nested/b.png": 0,
        "n03888257/c.jpg": 701,
    }
    assert found.classes == (0, 701) and found.is_subset


def test_all_1000_wordnet_ids_are_the_whole_task(tmp_path: Path) -> None:
    for wnid in imagenet_classes().wnids:
        _touch(tmp_path / "train" / wnid / "x.JPEG")
    found = _scan(tmp_path, "train")
    assert [target for _, target in found.samples] == list(range(1000))
    assert not found.is_subset


def test_numbered_and_label_folders(tmp_path: Path) -> None:
    for name in ("0", "404", "999"):
        _touch(tmp_path / "v2" / name / "1.jpeg")
    for name in ("tench", "crane bird", "crane"):
        _touch(tmp_path / "named" / name / "1.jpeg")
    numbered = _scan(tmp_path, "v2")
    assert numbered.layout == "index folders"
    assert _targets(numbered, tmp_path / "v2") == {
        "0/1.jpeg": 0,
        "404/1.jpeg": 404,
        "999/1.jpeg": 999,
    }
    named = _scan(tmp_path, "named")
    assert named.layout == "label folders"
    assert _targets(named, tmp_path / "named") == {
        "crane/1.jpeg": 517,
        "crane bird/1.jpeg": 134,
        "tench/1.jpeg": 0,
    }


def test_a_flat_validation_folder_reads_kaggles_solution_in_it_or_its_parent(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ILSVRC" / "val"
    _touch(folder / "ILSVRC2012_val_00000001.JPEG")
    _touch(folder / "ILSVRC2012_val_00000002.JPEG")
    (tmp_path / "ILSVRC" / "LOC_val_solution.csv").write_text(
        SOLUTION_HEADER
        + "ILSVRC2012_val_00000002,n09193705 1 2 3 4 n09193705 5 6 7 8\n"
        + "ILSVRC2012_val_00000001,n01751748 10 20 30 40 \n"
        + "ILSVRC2012_val_00000099,n01440764 1 1 2 2\n"  # rows for absent images are fine
    )
    found = _scan(tmp_path, "ILSVRC/val")
    assert found.layout == "ilsvrc2012-val" and found.classes is None and not found.is_subset
    assert found.ground_truth == "LOC_val_solution.csv"
    assert _targets(found, folder) == {
        "ILSVRC2012_val_00000001.JPEG": 65,  # sea snake
        "ILSVRC2012_val_00000002.JPEG": 970,  # alp
    }


def _map_clsloc(path: Path) -> None:
    """A stand-in for the devkit's map: ILSVRC2012_ID k is the class of index 1000 - k."""
    wnids = imagenet_classes().wnids
    path.write_text("".join(f"{wnids[1000 - k]} {k} name_{k}\n" for k in range(1, 1001)))


def test_the_devkit_ground_truth_goes_through_map_clsloc(tmp_path: Path) -> None:
    folder = tmp_path / "val"
    for number in (1, 2, 3):
        _touch(folder / f"ILSVRC2012_val_{number:08d}.JPEG")
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n1000\n490\n")
    _map_clsloc(tmp_path / "map_clsloc.txt")
    found = _scan(tmp_path, "val")
    assert found.ground_truth == "ILSVRC2012_validation_ground_truth.txt + map_clsloc.txt"
    assert [target for _, target in found.samples] == [999, 0, 510]


def _case(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "case"
    if name == "mixed naming":
        _touch(folder / "n01440764" / "a.jpg")
        _touch(folder / "7" / "a.jpg")
    elif name == "unknown wnid":
        _touch(folder / "n01440764" / "a.jpg")
        _touch(folder / "n99999999" / "a.jpg")
    elif name == "neither":
        _touch(folder / "cats" / "a.jpg")
    elif name == "leading zero":
        _touch(folder / "007" / "a.jpg")
    elif name == "images and folders":
        _touch(folder / "0" / "a.jpg")
        _touch(folder / "stray.jpg")
    elif name == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("nothing")
    elif name == "empty classes":
        (folder / "0").mkdir(parents=True)
        _touch(folder / "1" / "readme.txt")
    elif name == "no ground truth":
        _touch(folder / "ILSVRC2012_val_00000001.JPEG")
    elif name == "csv missing rows":
        _touch(folder / "ILSVRC2012_val_00000001.JPEG")
        _touch(folder / "ILSVRC2012_val_00000002.JPEG")
        (folder / "LOC_val_solution.csv").write_text(
            SOLUTION_HEADER + "ILSVRC2012_val_00000001,n01751748 1 2 3 4\n"
        )
    elif name == "csv unknown wnid":
        _touch(folder / "ILSVRC2012_val_00000001.JPEG")
        (folder / "LOC_val_solution.csv").write_text(
            SOLUTION_HEADER + "ILSVRC2012_val_00000001,n99999999 1 2 3 4\n"
        )
    elif name == "csv columns":
        _touch(folder / "ILSVRC2012_val_00000001.JPEG")
        (folder / "LOC_val_solution.csv").write_text("id,label\nILSVRC2012_val_00000001,0\n")
    elif name == "devkit without map":
        _touch(folder / "ILSVRC2012_val_00000001.JPEG")
        (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("490\n")
    elif name == "devkit image names":
        _touch(folder / "photo.jpg")
        (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("490\n")
        _map_clsloc(folder / "map_clsloc.txt")
    elif name == "devkit short":
        _touch(folder / "ILSVRC2012_val_00000002.JPEG")
        (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("490\n")
        _map_clsloc(folder / "map_clsloc.txt")
    elif name == "map incomplete":
        _touch(folder / "ILSVRC2012_val_00000001.JPEG")
        (folder / "ILSVRC2012_validation_ground_truth.txt").write_text("490\n")
        (folder / "map_clsloc.txt").write_text("n02119789 1 kit_fox\n")


REFUSALS = {
    "mixed naming": "must all be named one way",
    "unknown wnid": "'n99999999' are WordNet ids outside ImageNet-1k",
    "neither": "'cats' fit none of these",
    "leading zero": "'007' fit none of these",
    "images and folders": "both images",
    "empty": "holds no images",
    "empty classes": "class folders hold no images",
    "no ground truth": "needs its ground truth",
    "csv missing rows": "1 of the 2 images have no row in LOC_val_solution.csv",
    "csv unknown wnid": "line 2 of LOC_val_solution.csv names 'n99999999'",
    "csv columns": "ImageId,PredictionString",
    "devkit without map": "map_clsloc.txt",
    "devkit image names": "'photo.jpg' is not one of them",
    "devkit short": "'ILSVRC2012_val_00000002.JPEG' is not one of them",
    "map incomplete": "each ILSVRC2012_ID from 1 to 1000",
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_folders_that_cannot_be_evaluated_are_refused(tmp_path: Path, name: str) -> None:
    _case(tmp_path, name)
    with pytest.raises(BadRequest, match=REFUSALS[name]):
        _scan(tmp_path, "case")


def test_symlinks_out_of_the_data_dir_are_left_out(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    _touch(outside / "secret.jpg")
    _touch(data / "set" / "0" / "a.jpg")
    (data / "set" / "0" / "b.jpg").symlink_to(outside / "secret.jpg")
    (data / "set" / "1").symlink_to(outside)
    found = _scan(data, "set")
    assert _targets(found, data / "set") == {"0/a.jpg": 0}
