"""Loading Fashion-MNIST through torchvision from the files shipped with the repository."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from torchvision import datasets

from app import datasets as ds
from app.datasets import (
    DatasetNotFound,
    class_names,
    load_split,
    load_tensors,
    normalize,
    train_val_indices,
)

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "fashion-mnist"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir holding only the shipped test split, as distributed (.gz)."""
    target = tmp_path / "fashion-mnist"
    target.mkdir()
    for source in SHIPPED.glob("t10k-*.gz"):
        shutil.copy(source, target / source.name)
    return tmp_path


def test_finds_the_shipped_test_split(data_dir: Path) -> None:
    test = load_split("fashion-mnist", "test", data_dir)
    assert isinstance(test, datasets.FashionMNIST)
    assert len(test) == 10_000
    assert test.classes == datasets.FashionMNIST.classes
    image, label = test[0]
    assert image.size == (28, 28) and 0 <= label < 10


def test_unpacks_once_into_torchvisions_raw_folder(data_dir: Path) -> None:
    load_split("fashion-mnist", "test", data_dir)
    assert (data_dir / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    shutil.rmtree(data_dir / "fashion-mnist")
    assert len(load_split("fashion-mnist", "test", data_dir)) == 10_000


def test_reads_gz_files_put_in_the_raw_folder(data_dir: Path) -> None:
    raw = data_dir / "FashionMNIST" / "raw"
    shutil.move(data_dir / "fashion-mnist", raw)
    assert len(load_split("fashion-mnist", "test", data_dir)) == 10_000


def test_class_names_come_from_torchvision() -> None:
    assert class_names("fashion-mnist") == list(datasets.FashionMNIST.classes)
    assert class_names("mnist") == list(datasets.MNIST.classes)


def test_load_tensors_gives_normalized_images_and_long_labels(data_dir: Path) -> None:
    images, labels = load_tensors("fashion-mnist", "test", data_dir)
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.long
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_normalize_accepts_uint8_and_unit_range() -> None:
    pixels = torch.tensor([0, 255], dtype=torch.uint8)
    assert torch.allclose(normalize(pixels, "mnist"), normalize(pixels / 255.0, "mnist"))


def test_missing_files_offline_raise_a_sentence_that_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(self: object) -> None:
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    no_debian = dataclasses.replace(ds.DATASETS["mnist"], debian=tmp_path / "no-debian")
    monkeypatch.setitem(ds.DATASETS, "mnist", no_debian)
    with pytest.raises(DatasetNotFound, match="apt-get install -y dataset-mnist") as info:
        load_split("mnist", "train", tmp_path)
    assert str(tmp_path / "mnist") in str(info.value)


def test_unknown_dataset_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fashion-mnist, mnist"):
        load_split("cifar10", "test", tmp_path)


def test_train_val_split_is_seeded_disjoint_and_complete() -> None:
    train, val = train_val_indices(60_000, 6_000, seed=0)
    assert (train.numel(), val.numel()) == (54_000, 6_000)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(60_000))
    again, _ = train_val_indices(60_000, 6_000, seed=0)
    other, _ = train_val_indices(60_000, 6_000, seed=1)
    assert torch.equal(train, again) and not torch.equal(train, other)
