"""ImageNet-1k's 1000 classes as WordNet ids, in the pretrained models' class-index order.

The list ships as ``app/data/imagenet_wnids.txt`` in the format of the ILSVRC/Kaggle
``LOC_synset_mapping.txt`` (``wnid lemma, lemma, ...``): line i is class index i, which is
also the ids' sorted order (the order ImageFolder gives 1000 WordNet-id folders). It is checked
against torchvision's category names in tests/test_imagenet.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from importlib.resources import files

NUM_CLASSES = 1000


@dataclass(frozen=True)
class ImageNetClasses:
    """The 1000 WordNet ids (``wnids[i]`` is class index i) and their WordNet lemmas."""

    wnids: tuple[str, ...]
    lemmas: tuple[str, ...]

    @cached_property
    def by_wnid(self) -> dict[str, int]:
        """WordNet id -> class index."""
        return {wnid: index for index, wnid in enumerate(self.wnids)}


@cache
def imagenet_classes() -> ImageNetClasses:
    """Read the shipped list once."""
    text = files("app").joinpath("data", "imagenet_wnids.txt").read_text(encoding="utf-8")
    rows = [line.split(" ", 1) for line in text.splitlines() if line]
    return ImageNetClasses(
        wnids=tuple(wnid for wnid, _ in rows), lemmas=tuple(lemma for _, lemma in rows)
    )
