"""The docs site's performance page, built from ``bench/results/*.json`` at build time.

Measured figures are never copied by hand: the bench writes one JSON document per run (schema
1) and this hook renders every one of them, newest first, grouped by kind. ``render`` is pure
(parsed documents in, markdown out) so it is tested without mkdocs; the mkdocs entry points
only read the folder and hand the page to the build.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAGE = "performance.md"
RESULTS = Path("bench") / "results"  # relative to the folder that holds mkdocs.yml
SCHEMA = 1
REQUIRED = ("kind", "title", "command", "started", "machine", "versions", "columns", "rows")
INTRO = (
    "# Performance\n\n"
    "Generated when the docs are built, from the JSON documents the bench writes into "
    "`bench/results/` (one per run); nothing on this page is typed by hand. "
)
HOW_TO = (
    "Run a benchmark with `python -m torchgate_bench` (see [Development](development.md#bench)), "
    "commit the JSON file it writes into `bench/results/`, and rebuild the docs."
)


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` in ``folder`` (none if it does not exist), checked against the schema."""
    documents = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable JSON document ({exc})") from exc
        problem = _schema_problem(document)
        if problem:
            raise ValueError(f"{path}: {problem}")
        documents.append(document)
    return documents


def _schema_problem(document: object) -> str | None:
    if not isinstance(document, dict):
        return "a bench result is a JSON object"
    if document.get("schema") != SCHEMA:
        return f"schema {document.get('schema')!r}, expected {SCHEMA}"
    missing = [key for key in REQUIRED if key not in document]
    if missing:
        return f"missing {', '.join(missing)}"
    if not (isinstance(document["machine"], dict) and isinstance(document["versions"], dict)):
        return "machine and versions are JSON objects"
    columns, rows = document["columns"], document["rows"]
    if not isinstance(columns, list) or not all(isinstance(row, list) for row in rows):
        return "columns is a list and rows a list of lists"
    if any(len(row) != len(columns) for row in rows):
        return f"every row needs {len(columns)} cells, one per column"
    for key in ("started", "finished"):
        try:
            if key == "started" or document.get(key) is not None:
                _when(document[key])
        except (TypeError, ValueError):
            return f"{key} {document[key]!r} is not an ISO 8601 time"
    return None


def render(documents: list[dict[str, Any]]) -> str:
    """The whole page: an introduction, then each kind's runs, newest first."""
    if not documents:
        return f"{INTRO}There are no results yet. {HOW_TO}\n"
    ordered = sorted(documents, key=lambda d: (_when(d["started"]), d["title"]), reverse=True)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for document in ordered:  # kinds appear in the order of their newest run
        kinds.setdefault(str(document["kind"]), []).append(document)
    runs = "one run" if len(ordered) == 1 else f"{len(ordered)} runs"
    parts = [f"{INTRO}{runs.capitalize()}, newest first. {HOW_TO}\n"]
    for kind, group in kinds.items():
        parts.append(f"## {_text(kind)}\n")
        parts.extend(render_run(document) for document in group)
    return "\n".join(parts)


def render_run(document: dict[str, Any]) -> str:
    """One run: its title, when/command/machine/versions, the table, the ratios, the notes."""
    lines = [f"### {_text(document['title'])}", ""]
    lines.append(f"- **When:** {_period(document['started'], document.get('finished'))}")
    lines.append(f"- **Command:** {_code(str(document['command']))}")
    lines.append(f"- **Machine:** {_machine(document['machine'])}")
    versions = ", ".join(f"{name} {version}" for name, version in document["versions"].items())
    lines.append(f"- **Versions:** {_text(versions) or 'not recorded'}")
    lines += ["", _table(document["columns"], document["rows"])]
    ratios = document.get("ratios") or {}
    if ratios:
        lines += ["", "Ratios:", ""]
        lines += [f"- {_text(name)}: **{_number(value)}**" for name, value in ratios.items()]
    notes = document.get("notes") or []
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {_text(str(note))}" for note in notes]
    return "\n".join(lines) + "\n"


def _table(columns: list[Any], rows: list[list[Any]]) -> str:
    """Floats in a column share their decimals, so the column reads as one quantity."""
    decimals = [
        max((_decimals(v) for v in column if _is_float(v)), default=0)
        for column in zip(*rows, strict=True)
    ]
    head = "| " + " | ".join(_text(str(column)).replace("|", "\\|") for column in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(_cell(value, d) for value, d in zip(row, decimals, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join([head, rule, *body])


def _cell(value: Any, decimals: int) -> str:
    if value is None:
        return "—"
    if _is_float(value):
        return f"{value:,.{decimals}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _text(str(value)).replace("|", "\\|")


def _is_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _decimals(value: float) -> int:
    """The decimals that about three significant digits need (4.1: one; 0.401: three)."""
    if abs(value) >= 100:
        return 0
    text = f"{value:.3g}"
    return min(3, len(text.partition(".")[2])) if "e" not in text else 3


def _number(value: Any) -> str:
    """Counts with thousands separators; measurements with about three significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _text(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _machine(machine: dict[str, Any]) -> str:
    parts = []
    if machine.get("nproc") is not None:
        parts.append(f"nproc {machine['nproc']}")
    if machine.get("cpu"):
        parts.append(str(machine["cpu"]))
    if machine.get("memory_gib") is not None:
        parts.append(f"{_number(machine['memory_gib'])} GiB")
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    start, end = machine.get("load_average_start"), machine.get("load_average_end")
    if start or end:
        parts.append(f"load average {_load(start)} → {_load(end)}")
    return _text(", ".join(parts))


def _load(triple: list[float] | None) -> str:
    """The 1-minute figure: the one that moves while a run takes minutes."""
    return f"{triple[0]:.1f}" if triple else "?"


def _period(started: str, finished: str | None) -> str:
    begin = _when(started)
    text = begin.strftime("%Y-%m-%d %H:%M") + (f" {begin.tzname()}" if begin.tzinfo else "")
    if finished:
        seconds = (_when(finished) - begin).total_seconds()
        text += f" ({seconds / 60:.0f} min)" if seconds >= 120 else f" ({seconds:.0f} s)"
    return text


def _when(stamp: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC, so every run sorts together."""
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _code(text: str) -> str:
    text = " ".join(text.split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _text(text: str) -> str:
    """Free text from a result, kept on one line and free of HTML."""
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")


# -- mkdocs entry points (hooks: in mkdocs.yml) ---------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the build, as if it were a file under docs/."""
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    folder = Path(config.config_file_path).parent / RESULTS
    try:
        content = render(load_results(folder))
    except ValueError as exc:
        raise PluginError(f"bench result: {exc}") from exc
    files.append(File.generated(config, PAGE, content=content))
    return files


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    """``mkdocs serve`` rebuilds when a result is added."""
    folder = Path(config.config_file_path).parent / RESULTS
    if folder.is_dir():
        server.watch(str(folder))
    return server
