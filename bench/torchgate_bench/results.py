"""Every measuring command leaves its result as data: one JSON document per run in a results
folder, in the one schema the docs' performance pages are generated from, so that no figure
is ever copied into a page by hand (STYLE rule 15).

The schema (``SCHEMA``): ``kind`` (peers, protocols, startup, graphs, replicas, soak,
models), ``title``, ``command``, ``started``/``finished`` (UTC, ISO 8601), ``machine``,
``versions``, a table (``columns``, ``rows``), ``ratios``, the raw ``rounds`` and ``notes``.
"""

from __future__ import annotations

import json
import math
import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

from torchgate_bench.machine import describe_machine, load_average

SCHEMA = 1
DEFAULT_RESULTS_DIR = Path("bench/results")
ResultsDir = Annotated[
    Path,
    typer.Option(help="Folder for this run's JSON document (<UTC time>-<kind>.json)."),
]


@dataclass(frozen=True)
class Record:
    """One run's figures as the schema lays them out: a table, its ratios, what to know."""

    kind: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    ratios: dict[str, float | None] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)  # beyond torchgate and torch


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: unknown figures become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def command_line() -> str:
    """The command as typed, with ``python`` for whichever interpreter ran it."""
    return shlex.join(["python", *sys.orig_argv[1:]])


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class ResultsRun:
    """Opened when a command starts measuring, so the document has its start time and the
    load average before the run; ``write`` adds the end and the figures."""

    results_dir: Path
    started: datetime = field(default_factory=_now)
    machine: dict[str, object] = field(default_factory=describe_machine)

    def document(self, record: Record) -> dict[str, Any]:
        if any(len(row) != len(record.columns) for row in record.rows):
            raise ValueError(f"every row of a {record.kind} record needs {record.columns}")
        machine = self.machine
        return finite(
            {
                "schema": SCHEMA,
                "kind": record.kind,
                "title": record.title,
                "command": command_line(),
                "started": self.started.isoformat(),
                "finished": _now().isoformat(),
                "machine": {
                    "nproc": machine.get("nproc"),
                    "cpu": machine.get("cpu"),
                    "memory_gib": machine.get("memory_gib"),
                    "gpu": machine.get("gpu"),
                    "load_average_start": machine.get("load_average"),
                    "load_average_end": load_average(),
                },
                "versions": {
                    "torchgate": _version("torchgate"),
                    "torch": machine.get("torch_version") or _version("torch"),
                    "python": platform.python_version(),
                    **record.versions,
                },
                "columns": list(record.columns),
                "rows": [list(row) for row in record.rows],
                "ratios": dict(record.ratios),
                "rounds": list(record.rounds),
                "notes": list(record.notes),
            }
        )

    def write(self, record: Record) -> Path:
        """``<results_dir>/<started, UTC>-<kind>.json``; a second run in the same second
        gets ``-2``, never overwriting the first."""
        document = json.dumps(self.document(record), indent=2) + "\n"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.started:%Y%m%dT%H%M%SZ}-{record.kind}"
        for attempt in range(1, 100):
            path = self.results_dir / (f"{stem}.json" if attempt == 1 else f"{stem}-{attempt}.json")
            try:
                with path.open("x") as file:
                    file.write(document)
            except FileExistsError:
                continue
            return path
        raise FileExistsError(f"{stem}.json and its 98 numbered siblings exist already")
