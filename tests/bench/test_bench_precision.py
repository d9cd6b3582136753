"""bench-precision: float32 against each reduced precision, measured as a trial measures it,
printed as a table and written as a results document."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from tests.helpers.results import check_document, read_result
from torchgate_bench.precision import bench_precision

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench_precision)
    return app


def test_float32_is_printed_against_each_precision_and_written_as_a_document(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        _cli(),
        [
            "--models", "lstm,alexnet", "--dtypes", "bfloat16,int8_dynamic", "--limit", "200",
            "--imagenet-inputs", "8", "--threads", "1", "--results-dir", str(tmp_path),
            "--checkpoint-dir", str(REPO_ROOT / "models"), "--data-dir", str(REPO_ROOT / "data"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["model", "dtype"]
    printed = {tuple(line.split()[:3]) for line in lines[2:6]}
    assert printed == {
        ("lstm", "bfloat16", "accuracy"),
        ("lstm", "int8_dynamic", "accuracy"),
        ("alexnet", "bfloat16", "agreement"),
        ("alexnet", "int8_dynamic", "agreement"),
    }
    document = check_document(read_result(tmp_path, "precision"), "precision")
    rows = {(row[0], row[1]): dict(zip(document["columns"], row, strict=True))
            for row in document["rows"]}  # fmt: skip
    lstm = rows["lstm", "int8_dynamic"]
    assert 0.85 < lstm["float32"] <= 1 and 0 < lstm["top-1 agreement"] <= 1
    assert lstm["images/s ratio"] == document["ratios"]["lstm int8_dynamic / float32, images/s"]
    assert rows["alexnet", "bfloat16"]["float32"] == 1.0  # agreement of float32 with itself
    assert "random weights" in rows["alexnet", "bfloat16"]["note"]
    assert all(isinstance(row["promoted"], bool) for row in rows.values())


def test_unknown_models_and_dtypes_are_refused() -> None:
    result = CliRunner().invoke(_cli(), ["--models", "cnn", "--dtypes", "float8"])
    assert result.exit_code == 2 and "float8" in result.output
