"""The heads: one top-k ranking, with one tie rule, for every protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.serving.heads import rank, top_indices


@pytest.mark.parametrize("classes", [10, 1000])
@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_top_indices_rank_like_torch_topk(classes: int, k: int) -> None:
    scores = np.random.default_rng(classes + k).random(classes).astype(np.float32)
    expected = torch.from_numpy(scores).topk(k).indices.tolist()
    assert top_indices(scores, k).tolist() == expected


def test_top_indices_break_ties_by_index() -> None:
    scores = np.array([0.1, 0.4, 0.4, 0.1], dtype=np.float32)
    assert top_indices(scores, 2).tolist() == [1, 2]
    assert top_indices(scores, 4).tolist() == [1, 2, 0, 3]


def test_rank_names_each_class_and_keeps_the_tie_rule_per_row() -> None:
    rows = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1]], dtype=np.float32)
    ranked = rank(rows, ("a", "b", "c", "d"), 2)
    assert [[(p.index, p.label) for p in row] for row in ranked] == [
        [(1, "b"), (2, "c")],
        [(0, "a"), (1, "b")],
    ]
    assert ranked[1][0].probability == pytest.approx(0.7)
