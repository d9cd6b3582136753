"""The soak's short mode against a real cnn server: no errors and memory samples taken.

The growth figure is printed, not asserted: memory on a shared CI box is too noisy for that.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.helpers.repo import REPO_ROOT
from tests.helpers.results import check_document
from torchgate_bench.results import ResultsRun
from torchgate_bench.soak import SoakConfig, format_report, run_soak, soak_record

pytestmark = [pytest.mark.integration, pytest.mark.soak]


def test_short_soak_serves_without_errors_and_samples_memory(tmp_path: Path) -> None:
    config = SoakConfig(
        model="cnn",
        duration_s=8.0,  # plumbing, not figures: samples, requests and the record
        warmup_s=2.0,
        interval_s=1.0,
        concurrency=4,
        checkpoint_dir=REPO_ROOT / "models",
    )
    result = run_soak(config)
    print("\n" + format_report(result))

    assert result.error_count == 0, dict(result.errors)
    assert result.requests > 0
    assert len(result.samples) >= 5
    assert all(sample.rss_bytes > 0 for sample in result.samples)
    assert not math.isnan(result.rss_growth())

    record = check_document(ResultsRun(tmp_path).document(soak_record(result)), "soak")
    assert len(record["rows"]) == len(result.samples)
    growth = record["ratios"]["RSS last / first after warm-up"]
    assert growth == 1 + result.rss_growth()
