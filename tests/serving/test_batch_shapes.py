"""The batch sizes a model is warmed up and served at."""

import torch

from app.serving.batch_shapes import bucket_sizes, padded_size, warmup_batch_sizes


def test_warmup_sizes_cover_every_served_shape_on_cuda_only() -> None:
    assert warmup_batch_sizes(torch.device("cpu"), 64) == [1]
    assert warmup_batch_sizes(torch.device("cuda"), 24) == [1, 2, 4, 8, 16, 24]


def test_batches_are_padded_to_the_smallest_warmed_size_that_holds_them() -> None:
    warmed = bucket_sizes(24)
    assert warmed == [1, 2, 4, 8, 16, 24]
    assert [padded_size(n, warmed) for n in (1, 3, 5, 16, 17, 25)] == [1, 4, 8, 16, 24, 25]
