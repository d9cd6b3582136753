"""Evaluation functions on hand-made logits, where every figure can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from app.evaluation import evaluate_classifier, evaluate_gan_consistency, evaluate_loader

# 4 samples, 3 classes; the "images" are the logits themselves (forward = identity).
LOGITS = torch.tensor([[5.0, 0.0, 0.0], [0.0, 1.0, 4.0], [0.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
LABELS = torch.tensor([0, 1, 2, 2])


def _identity(x: Tensor) -> Tensor:
    return x


def test_accuracy_confusion_and_per_class() -> None:
    calls: list[tuple[int, int]] = []
    result = evaluate_classifier(
        _identity,
        LOGITS,
        LABELS,
        num_classes=3,
        batch_size=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result["n"] == 4
    assert result["accuracy"] == 0.5
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert result["per_class_accuracy"] == [1.0, 0.0, 0.5]
    assert "top5" not in result
    expected = torch.nn.functional.cross_entropy(LOGITS, LABELS).item()
    assert math.isclose(result["loss"], expected, rel_tol=1e-6)
    assert calls == [(3, 4), (4, 4)]


def test_top5_and_classes_without_samples() -> None:
    logits = torch.arange(10.0).repeat(2, 1)  # predicts 9, then 8, 7, 6, 5
    result = evaluate_classifier(_identity, logits, torch.tensor([5, 4]), num_classes=10)
    assert result["accuracy"] == 0.0
    assert result["top5"] == 0.5
    assert result["per_class_accuracy"][4:6] == [0.0, 0.0]
    assert result["per_class_accuracy"][0] is None


def test_loader_variant_matches_the_tensor_one() -> None:
    batches = [(LOGITS[:2], LABELS[:2]), (LOGITS[2:], LABELS[2:])]
    from_loader = evaluate_loader(_identity, batches, num_classes=3, total=4, confusion=True)
    from_tensors = evaluate_classifier(_identity, LOGITS, LABELS, num_classes=3)
    assert math.isclose(from_loader.pop("loss"), from_tensors.pop("loss"), rel_tol=1e-6)
    assert from_loader == from_tensors
    assert "confusion_matrix" not in evaluate_loader(_identity, batches, num_classes=3)


def test_a_subset_also_ranks_only_its_own_classes() -> None:
    logits = torch.zeros(3, 10)
    logits[0, [9, 2]] = torch.tensor([3.0, 2.0])  # label 2: 9 overall, 2 within the subset
    logits[1, 5] = 1.0  # label 5: right either way
    logits[2, [0, 2, 7]] = torch.tensor([3.0, 2.0, 1.0])  # label 7: wrong either way
    labels = torch.tensor([2, 5, 7])
    result = evaluate_loader(_identity, [(logits, labels)], num_classes=10, subset=[7, 2, 5])
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["subset_top1"] == pytest.approx(2 / 3)
    assert "subset_top5" not in result  # 3 classes: their top 5 holds every label
    assert result["subset_per_class"] == [
        {"index": 2, "n": 1, "top1": 0.0, "subset_top1": 1.0},
        {"index": 5, "n": 1, "top1": 1.0, "subset_top1": 1.0},
        {"index": 7, "n": 1, "top1": 0.0, "subset_top1": 0.0},
    ]
    six = evaluate_loader(_identity, [(logits, labels)], num_classes=10, subset=range(2, 8))
    assert six["subset_top5"] == 1.0 and six["subset_top1"] == pytest.approx(2 / 3)
    assert "subset_top1" not in evaluate_loader(_identity, [(logits, labels)], num_classes=10)


def test_wrong_logit_shape_is_reported() -> None:
    with pytest.raises(ValueError, match="expected"):
        evaluate_classifier(_identity, LOGITS, LABELS, num_classes=4)


MEAN, STD = 0.25, 0.5


def _generate(z: Tensor, labels: Tensor) -> Tensor:
    """Images whose every pixel encodes the label in [-1, 1]: label 0 -> -1, 9 -> 1."""
    value = labels.float() / 9 * 2 - 1
    return value[:, None, None, None].expand(len(labels), 1, 28, 28)


def _classify(x: Tensor) -> Tensor:
    """Undo the normalization and decode the label, except that 7 is always called 3."""
    label = (x[:, 0, 0, 0] * STD + MEAN).mul(9).round().long()
    label = torch.where(label == 7, torch.tensor(3), label)
    return torch.nn.functional.one_hot(label, 10).float()


def test_gan_consistency_converts_tanh_output_to_the_classifier_input() -> None:
    result = evaluate_gan_consistency(_generate, _classify, per_class=20, normalization=(MEAN, STD))
    assert result["n"] == 200
    assert result["consistency"] == 0.9
    assert result["per_class"][7] == 0.0 and result["per_class"][3] == 1.0
    assert result["classes_produced"] == 9 and result["all_classes_produced"] is False
    assert result["confusion_matrix"][7][3] == 20


def test_gan_consistency_noise_is_seeded() -> None:
    seen: list[Tensor] = []

    def recording(z: Tensor, labels: Tensor) -> Tensor:
        seen.append(z)
        return _generate(z, labels)

    for seed in (0, 0, 1):
        evaluate_gan_consistency(
            recording, _classify, per_class=2, seed=seed, normalization=(MEAN, STD)
        )
    assert torch.equal(seen[0], seen[10]) and not torch.equal(seen[0], seen[20])
    assert seen[0].shape == (2, 100)
