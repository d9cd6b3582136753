"""The shipped WordNet ids are ImageNet-1k's classes in the pretrained models' index order."""

from __future__ import annotations

from torchvision.models import AlexNet_Weights

from app.imagenet import NUM_CLASSES, imagenet_classes

# torchvision made two duplicate class names unique; every other label is its synset's first
# WordNet lemma, as written in the shipped list.
RENAMED = {
    134: ("n02012849", "crane", "crane bird"),  # the bird; 517 is the machine, "crane"
    639: ("n03710721", "maillot", "maillot tank suit"),  # 638 is the other "maillot"
}


def test_1000_unique_ids_whose_sorted_order_is_the_index_order() -> None:
    wnids = imagenet_classes().wnids
    assert len(wnids) == NUM_CLASSES == len(set(wnids))
    assert list(wnids) == sorted(wnids)
    assert all(len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit() for wnid in wnids)
    assert wnids[0] == "n01440764" and wnids[999] == "n15075141"  # tench, toilet tissue


def test_each_ids_first_lemma_is_torchvisions_label_at_that_index() -> None:
    classes = imagenet_classes()
    categories = AlexNet_Weights.DEFAULT.meta["categories"]
    assert len(categories) == NUM_CLASSES
    mismatches = {
        index: (wnid, lemma.split(", ")[0], label)
        for index, (wnid, lemma, label) in enumerate(
            zip(classes.wnids, classes.lemmas, categories, strict=True)
        )
        if lemma.split(", ")[0] != label
    }
    assert mismatches == RENAMED
    assert categories[517] == "crane" and classes.wnids[517] == "n03126707"
    assert categories[638] == "maillot" and classes.lemmas[638] == "maillot"


def test_ids_map_back_to_their_index() -> None:
    by_wnid = imagenet_classes().by_wnid
    # Imagenette's ten classes, with the indices its documentation gives
    assert [by_wnid[w] for w in ("n01440764", "n02102040", "n02979186", "n03888257")] == [
        0,
        217,
        482,
        701,
    ]
    assert "n99999999" not in by_wnid
