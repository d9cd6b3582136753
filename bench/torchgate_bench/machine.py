"""Facts about the machine a bench ran on, printed with every result so runs compare fairly."""

from __future__ import annotations

import os
import platform
import subprocess


def wrk_version(executable: str | None) -> str | None:
    """wrk's first banner line (it prints usage and exits 1 for ``-v``)."""
    if executable is None:
        return None
    completed = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
    lines = (completed.stdout or completed.stderr).splitlines()
    return lines[0].split(" [")[0].strip() if lines else None


def describe_machine() -> dict[str, object]:
    """CPU count (all, and usable by this process), torch build and its default threads."""
    import torch

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
