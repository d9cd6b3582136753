"""The results writer: one document per run, in the schema the docs' pages are built from."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers.results import read_result
from torchgate_bench.results import Record, ResultsRun

MACHINE = {
    "nproc": 2,
    "cpu": "Example CPU @ 2.0GHz",
    "memory_gib": 24.0,
    "gpu": None,
    "load_average": [0.5, 0.4, 0.3],
    "torch_version": "2.14.1",
}


def _record(**changes: object) -> Record:
    fields: dict[str, object] = {
        "kind": "peers",
        "title": "cnn at c=32: torchgate against torchserve",
        "columns": ["server", "req/s", "p50 ms", "p99 ms", "errors"],
        "rows": [["torchgate", 3567.0, 4.1, 17.8, 0], ["torchserve", 1800.0, 9.0, math.nan, 0]],
        "ratios": {"torchgate / torchserve (median of rounds)": 1.92},
        "rounds": [{"round": 1, "ratio": 1.9}],
        "notes": ["torchserve: 2 worker(s) x 1 thread(s), batch 8"],
        "versions": {"torchserve": "0.12.0"},
    }
    return Record(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_run_writes_one_document_in_the_schema(tmp_path: Path) -> None:
    started = datetime(2025, 12, 6, 23, 50, tzinfo=UTC)
    path = ResultsRun(tmp_path, started, dict(MACHINE)).write(_record())
    assert path == tmp_path / "20251206T235000Z-peers.json"
    document = read_result(tmp_path, "peers")
    assert document["started"] == "2025-12-06T23:50:00+00:00"
    assert document["machine"] == {
        "nproc": 2,
        "cpu": "Example CPU @ 2.0GHz",
        "memory_gib": 24.0,
        "gpu": None,
        "load_average_start": [0.5, 0.4, 0.3],
        "load_average_end": document["machine"]["load_average_end"],
    }
    assert document["versions"]["torch"] == "2.14.1"
    assert document["versions"]["torchserve"] == "0.12.0"
    assert document["versions"]["torchgate"] == "0.1.0"
    assert document["rows"][1] == ["torchserve", 1800.0, 9.0, None, 0]  # NaN: unknown
    assert document["ratios"] == {"torchgate / torchserve (median of rounds)": 1.92}


def test_a_second_run_in_the_same_second_keeps_the_first(tmp_path: Path) -> None:
    started = datetime(2025, 12, 6, 23, 50, tzinfo=UTC)
    first = ResultsRun(tmp_path, started, dict(MACHINE)).write(_record())
    second = ResultsRun(tmp_path, started, dict(MACHINE)).write(_record(title="the second"))
    assert second.name == "20251206T235000Z-peers-2.json"
    assert json.loads(first.read_text())["title"] == "cnn at c=32: torchgate against torchserve"
    assert json.loads(second.read_text())["title"] == "the second"


def test_a_row_that_does_not_fit_the_columns_is_refused(tmp_path: Path) -> None:
    run = ResultsRun(tmp_path, machine=dict(MACHINE))
    with pytest.raises(ValueError, match="every row"):
        run.write(_record(rows=[["torchgate", 1.0]]))
    assert list(tmp_path.iterdir()) == []


def test_the_machine_is_described_by_default(tmp_path: Path) -> None:
    run = ResultsRun(tmp_path / "new" / "folder")
    path = run.write(_record(kind="soak"))
    assert path.parent == tmp_path / "new" / "folder"
    machine = read_result(path.parent, "soak")["machine"]
    assert machine["nproc"] >= 1 and (machine["memory_gib"] is None or machine["memory_gib"] > 0)
