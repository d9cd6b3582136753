"""Which ImageNet evaluation layout a folder has, and the (image, class index) pairs it holds.

Read when the evaluation is requested, so a folder that cannot be evaluated answers 400 with
what to change, before any job starts; only the pixels are left for the job. Layouts:

- class folders, all named one way: WordNet ids (``n01440764``: Imagenette, Imagewoof, the
  ILSVRC train split), class indices ``0``-``999`` (ImageNet-V2) or the model's labels; any
  subset of the 1000 classes;
- the ILSVRC2012 validation images in one flat folder, with their ground truth in the folder or
  its parent: Kaggle's ``LOC_val_solution.csv``, or the devkit's
  ``ILSVRC2012_validation_ground_truth.txt`` together with the CLS-LOC devkit's
  ``map_clsloc.txt`` (the ground truth numbers classes by ILSVRC2012_ID, the devkit's own
  order, which is not the models' index order; ``map_clsloc.txt`` maps it to WordNet ids).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.errors import BadRequest
from app.imagenet import NUM_CLASSES, imagenet_classes

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
KAGGLE_SOLUTION = "LOC_val_solution.csv"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_SYNSETS = "map_clsloc.txt"
_WNID = re.compile(r"n[0-9]{8}")
_INDEX = re.compile(r"0|[1-9][0-9]{0,2}")
_NUMBER = re.compile(r"[0-9]+")
_VAL_IMAGE = re.compile(r"ILSVRC2012_val_([0-9]{8})")
_EXAMPLES = 3


@dataclass(frozen=True)
class ImageNetFolder:
    """What an evaluation reads: images with their class index, in a fixed order."""

    layout: str  # "wordnet-id folders", "index folders", "label folders", "ilsvrc2012-val"
    samples: list[tuple[str, int]]
    # The class folders' indices, sorted (class-folder layouts); None for the flat layout,
    # which is always the 1000-class task however many of its images are present.
    classes: tuple[int, ...] | None = None
    ground_truth: str | None = None

    @property
    def is_subset(self) -> bool:
        return self.classes is not None and len(self.classes) < NUM_CLASSES


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_EXAMPLES])
    return shown + (f" and {len(names) - _EXAMPLES} more" if len(names) > _EXAMPLES else "")


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _confined(path: Path, base: Path) -> bool:
    return path.resolve().is_relative_to(base)


def _listing(folder: Path, base: Path) -> tuple[list[os.DirEntry[str]], list[os.DirEntry[str]]]:
    """The folder's visible sub-folders and image files, sorted by name; a symlink that leads
    out of the data dir is left out, as if absent."""
    dirs, images = [], []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not _confined(Path(entry.path), base):
            continue
        if entry.is_dir():
            dirs.append(entry)
        elif entry.is_file() and _is_image(entry.name):
            images.append(entry)
    return dirs, images


def _images_under(folder: Path, base: Path) -> list[str]:
    """Image files at any depth, as ImageFolder finds them; nested symlinked folders are not
    followed (a link back up would never end)."""
    dirs, images = _listing(folder, base)
    found = [entry.path for entry in images]
    for entry in dirs:
        if not entry.is_symlink():
            found.extend(_images_under(Path(entry.path), base))
    return found


def scan_imagenet_folder(folder: Path, base: Path, categories: Sequence[str]) -> ImageNetFolder:
    """Detect ``folder``'s layout (``base`` is the resolved data dir) and list its samples;
    ``categories`` are the model's labels, for label-named folders."""
    dirs, images = _listing(folder, base)
    if dirs and images:
        raise BadRequest(
            f"the image folder holds both images ({_quoted([e.name for e in images])}) and "
            f"sub-folders ({_quoted([e.name for e in dirs])}); use class folders only, or one "
            "flat folder of ILSVRC2012 validation images with its ground truth."
        )
    if images:
        return _validation_folder(folder, base, [entry.name for entry in images])
    if dirs:
        return _class_folders(folder, base, [entry.name for entry in dirs], categories)
    raise BadRequest(
        "the image folder holds no images (.jpg, .jpeg, .png, .webp, .bmp, .gif) and no class "
        "folders."
    )


def _class_indices(names: list[str], categories: Sequence[str]) -> tuple[str, list[int]]:
    if all(_WNID.fullmatch(name) for name in names):
        by_wnid = imagenet_classes().by_wnid
        unknown = [name for name in names if name not in by_wnid]
        if unknown:
            raise BadRequest(
                f"the class folders {_quoted(unknown)} are WordNet ids outside ImageNet-1k's "
                "1000 classes, which are all these models predict; remove them."
            )
        return "wordnet-id folders", [by_wnid[name] for name in names]
    if all(_INDEX.fullmatch(name) for name in names):
        return "index folders", [int(name) for name in names]
    lookup = {label: index for index, label in enumerate(categories)}
    if all(name in lookup for name in names):
        return "label folders", [lookup[name] for name in names]
    misfits = [
        name
        for name in names
        if not (_WNID.fullmatch(name) or _INDEX.fullmatch(name) or name in lookup)
    ]
    problem = f"{_quoted(misfits)} fit none of these" if misfits else "this folder mixes them"
    raise BadRequest(
        "the class folders must all be named one way: WordNet ids (n01440764), class indices "
        f"0-999 (as in ImageNet-V2) or the model's labels ({categories[0]!r}, ...); {problem}."
    )


def _class_folders(
    folder: Path, base: Path, names: list[str], categories: Sequence[str]
) -> ImageNetFolder:
    layout, indices = _class_indices(names, categories)
    samples = [
        (path, index)
        for name, index in zip(names, indices, strict=True)
        for path in _images_under(folder / name, base)
    ]
    if not samples:
        raise BadRequest(
            f"the {len(names)} class folders hold no images (.jpg, .jpeg, .png, .webp, .bmp, .gif)."
        )
    return ImageNetFolder(layout, samples, classes=tuple(sorted(indices)))


def _ground_truth_file(folder: Path, base: Path, name: str) -> Path | None:
    """``name`` in the folder, else in its parent when that is still inside the data dir."""
    places = [folder] + ([folder.parent] if folder != base else [])
    for place in places:
        path = place / name
        if path.is_file() and _confined(path, base):
            return path
    return None


def _validation_folder(folder: Path, base: Path, images: list[str]) -> ImageNetFolder:
    stems = [os.path.splitext(name)[0] for name in images]
    solution = _ground_truth_file(folder, base, KAGGLE_SOLUTION)
    if solution is not None:
        by_image = _read_kaggle_solution(solution)
        missing = [name for name, stem in zip(images, stems, strict=True) if stem not in by_image]
        if missing:
            raise BadRequest(
                f"{len(missing)} of the {len(images)} images have no row in {KAGGLE_SOLUTION} "
                f"({_quoted(missing)}); add their rows or remove those images."
            )
        return _flat(folder, images, [by_image[stem] for stem in stems], KAGGLE_SOLUTION)
    ground_truth = _ground_truth_file(folder, base, DEVKIT_GROUND_TRUTH)
    if ground_truth is None:
        raise BadRequest(
            "a flat folder of images needs its ground truth next to it (in the folder or its "
            f"parent): Kaggle's {KAGGLE_SOLUTION}, or the devkit's {DEVKIT_GROUND_TRUTH} with "
            f"the CLS-LOC devkit's {DEVKIT_SYNSETS}; or sort the images into class folders."
        )
    synsets = _ground_truth_file(folder, base, DEVKIT_SYNSETS)
    if synsets is None:
        raise BadRequest(
            f"{DEVKIT_GROUND_TRUTH} numbers classes by ILSVRC2012_ID (the devkit's meta.mat "
            f"order, not the models' class order): put the CLS-LOC devkit's {DEVKIT_SYNSETS} "
            f"(lines 'n02119789 1 kit_fox') next to it, or use Kaggle's {KAGGLE_SOLUTION}."
        )
    by_id = _read_map_clsloc(synsets)
    ids = _read_lines(ground_truth)
    while ids and not ids[-1]:
        ids.pop()
    targets = []
    for name, stem in zip(images, stems, strict=True):
        match = _VAL_IMAGE.fullmatch(stem)
        number = int(match[1]) if match else 0
        if not 1 <= number <= len(ids):
            raise BadRequest(
                f"{DEVKIT_GROUND_TRUTH} has one line for each of ILSVRC2012_val_00000001 to "
                f"_{len(ids):08d}; {name!r} is not one of them."
            )
        ilsvrc_id = ids[number - 1]
        if ilsvrc_id not in by_id:
            raise BadRequest(
                f"line {number} of {DEVKIT_GROUND_TRUTH} reads {ilsvrc_id!r}; each line must be "
                "an ILSVRC2012_ID from 1 to 1000."
            )
        targets.append(by_id[ilsvrc_id])
    return _flat(folder, images, targets, f"{DEVKIT_GROUND_TRUTH} + {DEVKIT_SYNSETS}")


def _flat(folder: Path, images: list[str], targets: list[int], source: str) -> ImageNetFolder:
    root = str(folder)
    samples = [
        (os.path.join(root, name), target) for name, target in zip(images, targets, strict=True)
    ]
    return ImageNetFolder("ilsvrc2012-val", samples, ground_truth=source)


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{path.name} could not be read as text ({exc}).") from None


def _known_wnid(wnid: str, where: str) -> int:
    index = imagenet_classes().by_wnid.get(wnid)
    if index is None:
        raise BadRequest(f"{where} names {wnid!r}, which is not one of ImageNet-1k's classes.")
    return index


def _read_kaggle_solution(path: Path) -> dict[str, int]:
    """ImageId -> class index; a row's PredictionString starts with its WordNet id."""
    rows = _read_lines(path)
    reader = csv.DictReader(rows)
    if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
        raise BadRequest(f"{path.name} must have the columns ImageId,PredictionString.")
    by_image = {}
    for line, row in enumerate(reader, start=2):
        wnid = (row["PredictionString"] or "").split(" ", 1)[0]
        by_image[row["ImageId"]] = _known_wnid(wnid, f"line {line} of {path.name}")
    return by_image


def _read_map_clsloc(path: Path) -> dict[str, int]:
    """ILSVRC2012_ID, as the ground truth writes it ("1" to "1000") -> class index."""
    by_id = {}
    for line, text in enumerate(_read_lines(path), start=1):
        if not text:
            continue
        fields = text.split()
        if len(fields) < 2 or not _NUMBER.fullmatch(fields[1]):
            raise BadRequest(f"line {line} of {path.name} must read 'wnid ILSVRC2012_ID name'.")
        by_id[fields[1]] = _known_wnid(fields[0], f"line {line} of {path.name}")
    if sorted(by_id, key=int) != [str(i) for i in range(1, NUM_CLASSES + 1)]:
        raise BadRequest(
            f"{path.name} must map each ILSVRC2012_ID from 1 to 1000 to a WordNet id, once."
        )
    return by_id
