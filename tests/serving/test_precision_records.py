"""Precision records in the control store: a process that starts later serves the promoted
precision even when a reload came after it, and a record no process can apply is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.serving.store.sqlite_store import SqliteStore
from tests.helpers.apps import running_app

pytestmark = pytest.mark.anyio
MEASURED = {
    "dtype": "bfloat16",
    "metric": "accuracy",
    "accuracy": 0.9381,
    "float32": 0.9383,
    "drop": 0.0002,
    "agreement": 0.9996,
    "throughput_ratio": 1.46,
    "n": 10000,
    "dataset": "fashion-mnist test split",
    "measured_at": "2026-12-07T03:00:00+00:00",
}


async def test_a_late_process_replays_a_precision_promoted_before_the_latest_reload(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    state_url = f"sqlite:///{tmp_path}/state.sqlite3"
    earlier = SqliteStore(state_url, process_timeout_s=5, job_lease_s=10)  # a process gone now
    precision = earlier.append_record(
        "cnn", "precision", {"dtype": "bfloat16", "measured": MEASURED}, "gone:1", 1
    )
    reload = earlier.append_record("cnn", "reload", {}, "gone:1", precision.version)
    earlier.close()
    async with running_app(settings_factory(models=("cnn",), state_url=state_url)) as client:
        info = (await client.get("/v1/models/cnn")).json()
        assert info["dtype"] == "bfloat16" and info["precision_accuracy"] == MEASURED
        assert info["parameters_version"] == reload.version
        answer = await client.post("/v1/models/cnn/predict", json={"inputs": [[[[0.0] * 28] * 28]]})
        assert answer.status_code == 200
        assert answer.json()["parameters_version"] == reload.version


async def test_a_precision_record_with_an_unknown_dtype_is_failed_and_later_ones_go_on(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    state_url = f"sqlite:///{tmp_path}/state.sqlite3"
    store = SqliteStore(state_url, process_timeout_s=5, job_lease_s=10)
    bad = store.append_record("cnn", "precision", {"dtype": "float8"}, "elsewhere:1", 1)
    good = store.append_record("cnn", "precision", {"dtype": "int8_dynamic"}, "elsewhere:1", 2)
    store.close()
    async with running_app(settings_factory(models=("cnn",), state_url=state_url)) as client:
        info = (await client.get("/v1/models/cnn")).json()
        assert info["dtype"] == "int8_dynamic" and info["precision_accuracy"] is None
        assert info["parameters_version"] == good.version
        [failed] = info["failed_records"]
        assert failed["version"] == bad.version and "unknown dtype 'float8'" in failed["error"]
