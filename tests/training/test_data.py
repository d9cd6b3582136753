"""Batching and augmentation of the in-memory training tensors."""

from __future__ import annotations

import torch

from app.training.data import augment, batches, erase, num_batches


def test_batches_cover_each_image_once_and_drop_the_short_tail() -> None:
    images, labels = torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10)
    got = list(batches(images, labels, 4, torch.Generator().manual_seed(0)))
    assert len(got) == num_batches(10, 4) == 2
    seen = torch.cat([y for _, y in got])
    assert seen.unique().numel() == 8
    assert all(torch.equal(x.view(-1), y.float()) for x, y in got)


def test_a_set_smaller_than_a_batch_is_one_batch() -> None:
    got = list(batches(torch.zeros(3, 1, 2, 2), torch.arange(3), 8, torch.Generator()))
    assert len(got) == 1 and got[0][1].numel() == 3


def test_augment_only_flips_and_shifts() -> None:
    images = torch.randn(16, 1, 28, 28)
    rng = torch.Generator().manual_seed(0)
    assert torch.equal(augment(images, rng, flip=False, shift=0), images)
    out = augment(images, rng, flip=True, shift=2)
    assert out.shape == images.shape
    # Every output row is a (possibly mirrored, shifted) crop of the padded input.
    assert out.abs().max() <= images.abs().max()


def test_erase_blanks_one_rectangle_per_chosen_image_to_the_mean() -> None:
    images = torch.randn(64, 1, 28, 28) + 10  # no pixel is 0 before erasing
    out = erase(images, torch.Generator().manual_seed(0), p=1.0)
    blank = out == 0
    for mask in blank[:, 0]:
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        height, width = rows.numel(), cols.numel()
        assert int(mask.sum()) == height * width  # one filled rectangle
        assert rows.max() - rows.min() + 1 == height and cols.max() - cols.min() + 1 == width
        assert 1 <= height * width <= 0.33 * 28 * 28 + 28
    assert torch.equal(out[~blank], images[~blank])


def test_erase_is_seeded_and_respects_its_probability() -> None:
    images = torch.ones(2000, 1, 8, 8)
    first = erase(images, torch.Generator().manual_seed(1), p=0.25)
    again = erase(images, torch.Generator().manual_seed(1), p=0.25)
    assert torch.equal(first, again)
    erased = (first == 0).flatten(1).any(1).float().mean()
    assert 0.2 < erased < 0.3
    assert erase(images, torch.Generator(), p=0.0) is images
