"""Facts about the machine a bench ran on, printed with every result so runs compare fairly."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def wrk_version(executable: str | None) -> str | None:
    """wrk's first banner line (it prints usage and exits 1 for ``-v``)."""
    if executable is None:
        return None
    completed = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
    lines = (completed.stdout or completed.stderr).splitlines()
    return lines[0].split(" [")[0].strip() if lines else None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the shared cores were."""
    return [round(load, 2) for load in os.getloadavg()]


def _proc_field(path: str, name: str) -> str | None:
    """The value of the first ``name: value`` line of a /proc file (None off Linux)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_model() -> str | None:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None


def memory_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24576000 kB"
    if total is None or not total.split()[0].isdigit():
        return None
    return round(int(total.split()[0]) / 1024**2, 1)


def gpu_name() -> str | None:
    """The GPUs nvidia-smi lists ("2 x NVIDIA H100"), without a CUDA context in this process."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        completed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
    if not names:
        return None
    return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"


def describe_machine() -> dict[str, object]:
    """CPU count (all, and usable by this process), the CPU, memory and GPU, the torch build
    and its default threads."""
    import torch

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": memory_gib(),
        "gpu": gpu_name(),
        "load_average": load_average(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
