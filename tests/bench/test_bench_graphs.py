"""bench-graphs: each mode is built as the server builds it, timed, and checked against eager."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.serving.graphs import MAX_PROBABILITY_DIFF
from tests.helpers.results import check_document
from torchgate_bench import graphs
from torchgate_bench.graphs import bench_graphs, graphs_record, measure
from torchgate_bench.results import ResultsRun

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_mode_is_timed_at_batch_one_and_the_served_batch(tmp_path: Path) -> None:
    rows = measure("cnn", ("eager", "script"), REPO_ROOT / "models", 0.05, tmp_path)
    assert [row.mode for row in rows] == ["eager", "script"]
    for row in rows:
        assert set(row.ms_per_batch) == {1, 16} and all(ms > 0 for ms in row.ms_per_batch.values())
        assert row.max_difference <= MAX_PROBABILITY_DIFF
    table = graphs._table(rows)
    assert "(1.00x)" in table.splitlines()[1] and "script" in table.splitlines()[2]

    record = check_document(ResultsRun(tmp_path).document(graphs_record(rows)), "graphs")
    assert [row[:2] for row in record["rows"]] == [["cnn", "eager"], ["cnn", "script"]]
    assert record["rows"][1][7] == 16  # the batch the server forms
    eager, script = rows
    ratio = record["ratios"]["cnn script / eager, ms at batch 16"]
    assert ratio == script.ms_per_batch[16] / eager.ms_per_batch[16]


def test_unknown_models_and_modes_are_refused() -> None:
    import typer

    app = typer.Typer()
    app.command()(bench_graphs)
    result = CliRunner().invoke(app, ["--models", "cnn", "--modes", "jit"])
    assert result.exit_code == 2 and "jit" in result.output
