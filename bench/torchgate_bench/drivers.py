"""Which load generator drives a target: wrk or h2load (C, cheap on a shared machine) when
installed, else the Python one (loadgen); each is a ``Driver``, so callers never care which."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torchgate_bench.h2load import find_h2load, run_h2load
from torchgate_bench.load import LoadPlan, LoadResult, LoadTarget
from torchgate_bench.loadgen import run_loadgen
from torchgate_bench.wrk import find_wrk, run_wrk

Driver = Callable[[LoadTarget, LoadPlan], LoadResult]


def choose_grpc_driver(tool: str, workdir: Path) -> tuple[str, Driver]:
    """h2load when installed (C, like wrk) unless httpx is asked for, else the Python client."""
    executable = find_h2load() if tool in ("auto", "wrk") else None
    if executable is not None:
        return "h2load", lambda target, plan: run_h2load(target, plan, workdir, executable)
    return "grpc.aio", run_loadgen


def choose_driver(tool: str, workdir: Path) -> tuple[str, Driver]:
    """wrk when asked for or installed (it costs the 2-core box far less CPU), else httpx."""
    executable = find_wrk() if tool in ("auto", "wrk") else None
    if tool == "wrk" and executable is None:
        raise RuntimeError("wrk is not installed; install it (apt-get install wrk) or use httpx.")
    if executable is not None:
        return "wrk", lambda target, plan: run_wrk(target, plan, workdir, executable)
    return "httpx", run_loadgen
