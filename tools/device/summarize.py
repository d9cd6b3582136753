"""The device check's table: one Markdown document from the JSON each step left in $OUT.

    python3 tools/device/summarize.py OUT_DIR [--steps steps.jsonl] [--junit tests.xml]

Missing or broken inputs become a line saying so; the summary itself never fails.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

PRECISIONS = (
    ("fp32", "resnet101-fp32.json"),
    ("fp16 autocast", "resnet101-fp16.json"),
    ("fp32, AOTInductor", "resnet101-aot.json"),
)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def steps_section(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return ["(no step record)"]
    rows = []
    for line in path.read_text().splitlines():
        step = json.loads(line)
        outcome = {0: "ok", 124: "TIMEOUT", -1: "skipped"}.get(step["status"], "FAILED")
        rows.append([step["step"], f"{outcome} ({step['status']})", float(step["seconds"])])
    return _table(["step", "exit", "seconds"], rows)


def models_section(document: dict[str, Any] | None) -> list[str]:
    if document is None or "models" not in document:
        return ["(models.json missing: the load step failed, see check.log)"]
    memory = document["models"][0]["memory"] if document["models"] else "memory"
    rows = [
        [
            row["model"],
            row["status"] if not row.get("reason") else f"{row['status']}: {row['reason'][:80]}",
            row["load_s"],
            row["memory_added_mib"],
            row["peak_mib"],
            row["graph"],
            row["max_batch_size"],
        ]
        for row in document["models"]
    ]
    header = ["model", "status", "load s", f"{memory} added MiB", "peak MiB", "graph", "batch"]
    lines = [f"Weights: {document.get('weights')}.", "", *_table(header, rows)]
    shapes = document.get("shapes")
    if shapes:
        lines += [
            "",
            f"Batch shapes ({shapes['model']}, batches up to {shapes['max_batch_size']}, warmed "
            f"sizes {shapes['buckets']}): {shapes['sizes_measured']} of the "
            f"{shapes['sizes_not_warmed']} other sizes measured; a new size's first forward "
            f"(cuDNN tuning it) costs {_fmt(shapes['tuning_s_mean'], 3)} s more than the next, "
            f"so warming every size would add about {_fmt(shapes['warm_every_size_s'])} s to "
            "this model's start-up; padding to the warmed size takes "
            f"{_fmt(shapes['padded_over_exact_mean'], 2)}x the exact size's steady time "
            "(mean over the sizes measured).",
        ]
    return lines


def bench_title(out: Path) -> str:
    for _, name in PRECISIONS:
        header = (_load(out / name) or {}).get("header")
        if header:
            batch = header.get("extra_env", {}).get("TORCHGATE_MAX_BATCH_SIZE", "default")
            return (
                f"{header['model']} served at concurrency {header['concurrency']} "
                f"(max batch {batch}, {header['duration_s']:g} s, {header['load_tool']} "
                f"load, {header.get('nproc', '?')} cores) against raw"
            )
    return "resnet101 served against raw"


def bench_section(out: Path) -> list[str]:
    rows = []
    for precision, name in PRECISIONS:
        document = _load(out / name)
        if document is None or not document.get("scenarios"):
            rows.append([precision, f"(no result: {name} missing or empty, see check.log)"])
            continue
        scenario, raw = document["scenarios"][0], document.get("raw") or {}
        predict = scenario["predict"]
        forward = (
            f"{_fmt(raw.get('forward_images_per_s'))} ({raw.get('best_variant')}, "
            f"batch {raw.get('best_batch_size')})"
        )
        decode = f"{_fmt(raw.get('decode_images_per_s'))} ({raw.get('decode_threads')} threads)"
        rows.append(
            [
                precision,
                predict.get("images_per_s"),
                raw.get("raw_images_per_s"),
                forward,
                decode,
                _fmt(scenario.get("served_over_raw"), 3),
                (predict.get("latency") or {}).get("p50_ms"),
                (predict.get("latency") or {}).get("p99_ms"),
                predict.get("errors"),
                _fmt(scenario.get("server_cores_busy"), 2),
            ]
        )
    header = [
        "precision",
        "served images/s",
        "raw images/s",
        "forward ceiling",
        "decode ceiling",
        "served/raw",
        "p50 ms",
        "p99 ms",
        "errors",
        "server cores busy",
    ]
    return _table(header, rows)


def startup_section(document: dict[str, Any] | None) -> list[str]:
    if document is None:
        return ["(startup.json missing: the start-up step failed, see check.log)"]
    mib = 1024 * 1024
    rows = [
        [
            document.get("cold_start_s"),
            document.get("torch_load_s"),
            _fmt(document.get("cold_start_ratio"), 2),
            _fmt(document.get("fresh_process_ratio"), 2),
            document.get("rss_bytes", 0) / mib,
            _fmt(document.get("memory_ratio"), 2),
            f"{document.get('requests')} ({document.get('errors')} errors)",
        ]
    ]
    header = [
        "cold start s",
        "torch.load s",
        "cold/torch.load",
        "cold/fresh process",
        "server RSS MiB",
        "RSS/(params+baseline)",
        "cnn requests",
    ]
    lines = _table(header, rows)
    for name, model in (document.get("models") or {}).items():
        if model.get("status") != "ready" or model.get("first_request") != 200:
            lines.append(f"- {name}: {model.get('status')}: {model.get('reason')}")
    return lines


def tests_section(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return ["(no test report: the test step did not run or failed to start)"]
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        return [f"(unreadable test report: {exc})"]
    outcomes: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in root.iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{(case.get('name') or '').splitlines()[0][:100]}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"].append(name)
        elif case.find("skipped") is not None:
            outcomes["skipped"].append(name)
        else:
            outcomes["passed"].append(name)
    lines = [", ".join(f"{len(names)} {kind}" for kind, names in outcomes.items()) + "."]
    tally: dict[str, dict[str, int]] = {}
    for kind, names in outcomes.items():
        for name in names:
            if name.startswith("test_cuda"):
                counts = tally.setdefault(name.split("[")[0], {})
                counts[kind] = counts.get(kind, 0) + 1
    for test, counts in tally.items():
        lines.append(f"- {test}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    lines += [f"- FAILED {name}" for name in outcomes["failed"]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=Path, default=None)
    parser.add_argument("--junit", type=Path, default=None)
    parser.add_argument("--title", default="Device check")
    args = parser.parse_args()
    models = _load(args.out / "models.json")
    device = (models or {}).get("device_name", "?")
    lines = [
        f"## {args.title}: {device}, torch {(models or {}).get('torch', '?')}",
        "",
        "### Steps",
        *steps_section(args.steps),
        "",
        "### Models, loaded one at a time",
        *models_section(models),
        "",
        f"### {bench_title(args.out)}",
        *bench_section(args.out),
        "",
        "### Start-up, all six models",
        *startup_section(_load(args.out / "startup.json")),
        "",
        "### Tests",
        *tests_section(args.junit),
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
