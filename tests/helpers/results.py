"""Reading back the JSON documents the bench writes into its results folder, held to the one
schema the docs' performance pages are generated from (torchgate_bench/results.py)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

KEYS = {"schema", "kind", "title", "command", "started", "finished", "machine", "versions"}
KEYS |= {"columns", "rows", "ratios", "rounds", "notes"}
MACHINE_KEYS = {"nproc", "cpu", "memory_gib", "gpu", "load_average_start", "load_average_end"}


def check_document(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """The schema's keys, exactly, and values a page generator can rely on."""
    json.dumps(document, allow_nan=False)
    assert set(document) == KEYS
    assert document["schema"] == 1 and document["kind"] == kind
    assert document["title"] and document["command"].startswith("python ")
    started = datetime.fromisoformat(document["started"])
    assert started.utcoffset() is not None  # UTC, with its offset
    assert started <= datetime.fromisoformat(document["finished"])
    machine = document["machine"]
    assert set(machine) == MACHINE_KEYS
    assert machine["nproc"] >= 1 and len(machine["load_average_start"]) == 3
    assert len(machine["load_average_end"]) == 3
    assert {"torchgate", "torch", "python"} <= set(document["versions"])
    columns, rows = document["columns"], document["rows"]
    assert columns and all(isinstance(column, str) for column in columns)
    assert rows and all(len(row) == len(columns) for row in rows)
    assert isinstance(document["ratios"], dict) and isinstance(document["rounds"], list)
    assert all(isinstance(note, str) for note in document["notes"])
    return document


def read_result(folder: Path, kind: str) -> dict[str, Any]:
    """The one document of ``kind`` in ``folder``, named ``<UTC time>-<kind>.json``."""
    (path,) = folder.glob(f"*-{kind}*.json")
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z-{kind}(-\d+)?\.json", path.name), path.name
    return check_document(json.loads(path.read_text()), kind)
