"""The heads: one top-k ranking, with one tie rule, for every protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.serving import heads
from app.serving.heads import rank, top_indices


@pytest.mark.parametrize("classes", [10, 1000])
@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_top_indices_rank_like_torch_topk(classes: int, k: int) -> None:
    scores = np.random.default_rng(classes + k).random(classes).astype(np.float32)
    expected = torch.from_numpy(scores).topk(k).indices.tolist()
    assert top_indices(scores, k) == expected


def test_top_indices_break_ties_by_index() -> None:
    scores = np.array([0.1, 0.4, 0.4, 0.1], dtype=np.float32)
    assert top_indices(scores, 2) == [1, 2]
    assert top_indices(scores, 4) == [1, 2, 0, 3]


@pytest.mark.parametrize("classes", [10, 1000])
def test_ties_at_the_kth_place_go_to_the_lower_indices(classes: int) -> None:
    scores = np.full(classes, 0.1, dtype=np.float32)
    scores[classes - 1] = 0.9
    assert top_indices(scores, 3) == [classes - 1, 0, 1]


@pytest.mark.parametrize("classes", [10, 1000])
def test_nan_scores_rank_last(classes: int) -> None:
    scores = np.linspace(0, 1, classes, dtype=np.float32)
    scores[[0, classes - 1]] = np.nan
    assert top_indices(scores, 2) == [classes - 2, classes - 3]
    assert top_indices(scores, classes)[-2:] == [0, classes - 1]


def test_the_list_sort_and_numpys_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few classes are sorted as a Python list, many with numpy: the same order either way."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        scores = rng.integers(0, 4, int(rng.integers(1, 40))).astype(np.float32) / 3
        if rng.random() < 0.3:
            scores[rng.integers(0, scores.shape[0])] = np.nan
        k = int(rng.integers(1, scores.shape[0] + 1))
        few = top_indices(scores, k)
        monkeypatch.setattr(heads, "FEW_CLASSES", 0)
        assert top_indices(scores, k) == few, (scores, k)
        monkeypatch.undo()


def test_rank_names_each_class_and_keeps_the_tie_rule_per_row() -> None:
    rows = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1]], dtype=np.float32)
    ranked = rank(rows, ("a", "b", "c", "d"), 2)
    assert [[(p.index, p.label) for p in row] for row in ranked] == [
        [(1, "b"), (2, "c")],
        [(0, "a"), (1, "b")],
    ]
    assert ranked[1][0].probability == pytest.approx(0.7)
