"""``bench --startup`` for a person (text) and as a results record, against its targets."""

from __future__ import annotations

from torchgate_bench.results import Record
from torchgate_bench.startup import StartupResult

_MIB = 1024 * 1024
# the targets: what torchgate may cost beyond torch alone
COLD_START_TARGET = 1.3
FRESH_PROCESS_TARGET = 1.5
MEMORY_TARGET = 1.25


def format_startup(result: StartupResult, machine: dict[str, object]) -> str:
    budget = result.parameter_bytes + result.baseline_rss_bytes
    lines = [
        f"nproc {machine.get('nproc')} · all six models · {result.requests} cnn requests, "
        f"{result.errors} errors",
        f"cold start to /readyz   {result.cold_start_s:6.2f} s",
        f"torch.load of the six   {result.torch_load_s:6.2f} s",
        f"cold start ratio        {result.cold_start_ratio:6.2f}x   "
        f"(target <= {COLD_START_TARGET}x)",
        "fresh process: import torch, torchvision + torch.load  "
        f"{result.fresh_process_load_s:6.2f} s -> ratio {result.fresh_process_ratio:.2f}x"
        f"   (target <= {FRESH_PROCESS_TARGET}x)",
        f"server RSS              {result.rss_bytes / _MIB:8,.0f} MiB",
        f"parameters + baseline   {budget / _MIB:8,.0f}"
        f" MiB ({result.parameter_bytes / _MIB:,.0f} + {result.baseline_rss_bytes / _MIB:,.0f})",
        f"memory ratio            {result.memory_ratio:6.2f}x   (target <= {MEMORY_TARGET}x)",
        f"where the cold start goes:\n{result.breakdown()}",
    ]
    lines += _unready(result)
    return "\n".join(lines)


def _unready(result: StartupResult) -> list[str]:
    return [
        f"{name}: {model.get('status')}: {model.get('reason')}"
        for name, model in result.models.items()
        if model.get("status") != "ready" or model.get("first_request") != 200
    ]


def startup_record(result: StartupResult) -> Record:
    budget_mib = (result.parameter_bytes + result.baseline_rss_bytes) / _MIB
    rows: list[list[object]] = [
        [
            "cold start to /readyz vs torch.load of the six (s)",
            result.cold_start_s,
            result.torch_load_s,
            result.cold_start_ratio,
            COLD_START_TARGET,
        ],
        [
            "cold start vs a fresh process importing torch and loading the six (s)",
            result.cold_start_s,
            result.fresh_process_load_s,
            result.fresh_process_ratio,
            FRESH_PROCESS_TARGET,
        ],
        [
            "resident memory vs parameters + a process with torch imported (MiB)",
            result.rss_bytes / _MIB,
            budget_mib,
            result.memory_ratio,
            MEMORY_TARGET,
        ],
    ]
    return Record(
        kind="startup",
        title="cold start and memory with all six models, against torch alone",
        columns=["figure", "torchgate", "torch alone", "ratio", "target (at most)"],
        rows=rows,
        ratios={
            "cold start / torch.load": result.cold_start_ratio,
            "cold start / fresh process load": result.fresh_process_ratio,
            "memory / (parameters + baseline)": result.memory_ratio,
        },
        notes=[
            f"{result.requests} cnn requests served before memory was read, {result.errors} errors",
            "where the cold start goes:",
            *result.breakdown().splitlines(),
            *_unready(result),
        ],
    )
