"""bench-explain: what it times for each classifier, the record it writes, what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers.results import check_document
from tests.helpers.servers import RealServer
from torchgate_bench.explain import ExplainRow, bench_explain, explain_record, measure, table
from torchgate_bench.latency import LatencySummary
from torchgate_bench.results import ResultsRun


def _row(model: str, what: str, p50: float) -> ExplainRow:
    return ExplainRow(model, what, 5, LatencySummary(p50, p50 * 2, p50 * 3, p50, p50 * 4))


def test_the_record_puts_each_explanation_beside_its_models_predict(tmp_path: Path) -> None:
    rows = [
        _row("cnn", "predict", 2.0),
        _row("cnn", "integrated_gradients steps=32", 20.0),
        _row("lstm", "predict", 4.0),
        _row("lstm", "saliency", 6.0),
    ]
    document = ResultsRun(tmp_path).document(explain_record(rows, ["resnet101"]))
    record = check_document(document, "explain")
    assert record["rows"][1] == ["cnn", "integrated_gradients steps=32", 5, 20.0, 40.0, 10.0]
    assert record["rows"][2][-1] == 1.0  # predict over itself
    assert record["ratios"] == {
        "cnn integrated_gradients steps=32 / predict, p50": 10.0,
        "lstm saliency / predict, p50": 1.5,
    }
    assert any("random weights for resnet101" in note for note in record["notes"])
    lines = table(rows).splitlines()
    assert "10.0x" in lines[2] and "1.5x" in lines[4]


@pytest.mark.integration
def test_every_variant_is_timed_on_a_real_server(real_server: RealServer) -> None:
    rows = measure(real_server.http, "cnn", [4, 8], requests=2, warmup=0)
    assert [row.what for row in rows] == [
        "predict",
        "integrated_gradients steps=4",
        "integrated_gradients steps=8",
        "saliency",
        "gradcam",
    ]
    assert all(row.requests == 2 and row.latency.p50_ms > 0 for row in rows)
    assert "gradcam" not in [row.what for row in measure(real_server.http, "lstm", [4], 1, 0)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--models", "gan"], "choose classifiers"),
        (["--models", "cnn", "--steps", "300"], "steps are 1..256"),
        (["--models", "cnn", "--steps", "many"], "steps are integers"),
    ],
)
def test_what_cannot_be_explained_is_refused(arguments: list[str], message: str) -> None:
    app = typer.Typer()
    app.command()(bench_explain)
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and message in result.output
