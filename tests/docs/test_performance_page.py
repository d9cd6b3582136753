"""The performance page is rendered from the bench's result files, never typed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "performance.py"


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_performance_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": 1,
        "kind": "peers",
        "title": "cnn at c=32: torchgate against TorchServe",
        "command": "python -m torchgate_bench bench --peer torchserve --model cnn",
        "started": "2026-12-06T23:50:00+00:00",
        "finished": "2026-12-06T23:58:00+00:00",
        "machine": {
            "nproc": 2,
            "cpu": "Example CPU @ 2.0GHz",
            "memory_gib": 24.0,
            "gpu": None,
            "load_average_start": [0.5, 0.4, 0.3],
            "load_average_end": [1.9, 1.1, 0.6],
        },
        "versions": {"torchgate": "0.1.0", "torch": "2.14.1", "python": "3.11.7"},
        "columns": ["server", "req/s", "p50 ms", "p99 ms", "errors"],
        "rows": [["torchgate", 3567.0, 4.1, 17.8, 0], ["torchserve", 1800.0, 9.0, 29.0, 0]],
        "ratios": {"torchgate / torchserve (median of rounds)": 1.92},
        "rounds": [{"round": 1}],
        "notes": ["TorchServe's first round is its slowest."],
    }
    document.update(changes)
    return document


def _write(folder: Path, name: str, document: object) -> None:
    (folder / name).write_text(json.dumps(document))


def test_two_results_render_newest_first_with_their_tables(
    hook: ModuleType, tmp_path: Path
) -> None:
    older = _result()
    newer = _result(
        kind="protocols",
        title="cnn at c=32: v1, v2 and gRPC",
        started="2026-12-07T10:00:00+00:00",
        finished="2026-12-07T10:00:40+00:00",
        machine={**older["machine"], "gpu": "NVIDIA H100 80GB HBM3"},
        columns=["protocol", "req/s", "server CPU ms/request"],
        rows=[["v1", 3567.25, 0.401], ["grpc", 2732, None]],
        ratios={},
        notes=[],
    )
    _write(tmp_path, "2026-12-06-peers.json", older)
    _write(tmp_path, "2026-12-07-protocols.json", newer)

    page = hook.render(hook.load_results(tmp_path))

    assert page.startswith("# Performance\n")
    assert "2 runs, newest first" in page
    assert page.index("## protocols") < page.index("## peers")  # the newest run's kind first
    assert page.index(newer["title"]) < page.index(older["title"])
    assert "| server | req/s | p50 ms | p99 ms | errors |" in page
    assert "| torchgate | 3,567 | 4.1 | 17.8 | 0 |" in page
    assert "| torchserve | 1,800 | 9.0 | 29.0 | 0 |" in page  # a column shares its decimals
    assert "| grpc | 2,732 | — |" in page
    assert "| v1 | 3,567 | 0.401 |" in page
    assert "- torchgate / torchserve (median of rounds): **1.92**" in page
    assert "- TorchServe's first round is its slowest." in page
    assert "`python -m torchgate_bench bench --peer torchserve --model cnn`" in page
    assert "2026-12-06 23:50 UTC (8 min)" in page
    assert "2026-12-07 10:00 UTC (40 s)" in page
    assert "nproc 2, Example CPU @ 2.0GHz, 24 GiB, no GPU, load average 0.5 → 1.9" in page
    assert "GPU NVIDIA H100 80GB HBM3" in page
    assert "torchgate 0.1.0, torch 2.14.1, python 3.11.7" in page
    assert page.count("Ratios:") == 1 and page.count("Notes:") == 1  # empty ones are left out


def test_without_results_the_page_says_so_and_how_to_make_some(
    hook: ModuleType, tmp_path: Path
) -> None:
    page = hook.render(hook.load_results(tmp_path / "missing"))
    assert "There are no results yet." in page
    assert "python -m torchgate_bench" in page and "bench/results/" in page


def test_free_text_cannot_break_the_table_or_inject_html(hook: ModuleType) -> None:
    page = hook.render([_result(rows=[["a|b <script>", 1, 2, 3, 4]])])
    assert "| a\\|b &lt;script&gt; | 1 | 2 | 3 | 4 |" in page


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (_result(schema=2), "schema 2, expected 1"),
        ({k: v for k, v in _result().items() if k != "rows"}, "missing rows"),
        (_result(rows=[["torchgate", 1.0]]), "every row needs 5 cells"),
        (_result(started="yesterday"), "started 'yesterday' is not an ISO 8601 time"),
        (_result(finished="later"), "finished 'later' is not an ISO 8601 time"),
        (_result(versions=["2.14.1"]), "machine and versions are JSON objects"),
        ([1, 2], "a bench result is a JSON object"),
    ],
)
def test_a_result_off_the_schema_fails_naming_its_file(
    hook: ModuleType, tmp_path: Path, document: object, problem: str
) -> None:
    _write(tmp_path, "bad.json", document)
    with pytest.raises(ValueError, match=problem) as caught:
        hook.load_results(tmp_path)
    assert "bad.json" in str(caught.value)
