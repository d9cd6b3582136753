"""The precision comparison: both forwards on the same batches, scored by accuracy (or top-1
agreement without labels), and the gate that a tolerance of 0 closes to any drop."""

from __future__ import annotations

import torch

from app.comparison import compare_classifiers, judge


def _batches(labels: bool) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    inputs = torch.eye(4)  # logits = the input: sample i is predicted class i
    return [(inputs, torch.arange(4) if labels else None)]


def _one_wrong(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[3] = torch.tensor([1.0, 0, 0, 0])  # sample 3 now answers class 0
    return out


def test_a_drop_of_one_sample_is_refused_at_zero_and_passes_at_its_size() -> None:
    result = compare_classifiers(lambda x: x, _one_wrong, _batches(True), 4, total=4)
    assert result["metric"] == "accuracy" and result["n"] == 4
    assert result["baseline"]["accuracy"] == 1.0 and result["candidate"]["accuracy"] == 0.75
    assert result["candidate"]["per_class_accuracy"] == [1.0, 1.0, 1.0, 0.0]
    assert result["agreement"] == 0.75
    assert result["baseline"]["images_per_second"] > 0 and result["throughput_ratio"] > 0
    assert judge(result["baseline"], result["candidate"], "accuracy", 0.0, 4)[:2] == (False, 0.25)
    assert judge(result["baseline"], result["candidate"], "accuracy", 0.25, 4)[0] is True


def test_an_equal_or_better_score_passes_even_at_zero() -> None:
    same = {"accuracy": 0.9383}
    assert judge(same, same, "accuracy", 0.0, 10_000) == (
        True,
        0.0,
        "accuracy dropped by 0.0000, within 0",
    )
    promoted, drop, reason = judge(same, {"accuracy": 0.9385}, "accuracy", 0.0, 10_000)
    assert promoted and drop < 0 and "rose" in reason


def test_without_labels_the_score_is_agreement_and_the_result_says_so() -> None:
    result = compare_classifiers(lambda x: x, _one_wrong, _batches(False), 4, total=4)
    assert result["metric"] == "agreement" and "no labelled set" in result["note"]
    assert result["baseline"]["agreement"] == 1.0 and result["candidate"]["agreement"] == 0.75
    assert "accuracy" not in result["candidate"]
