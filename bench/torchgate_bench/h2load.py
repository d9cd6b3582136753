"""Drive gRPC load with ``h2load`` (nghttp2's HTTP/2 load generator, C), as ``wrk`` drives HTTP.

A gRPC unary call is an HTTP/2 POST of one length-prefixed message with two headers, so h2load
replays the prepared ModelInferRequest exactly as a gRPC client would send it, for a few
microseconds of CPU per call: the Python client (grpc_load.py) spent 0.16 ms per
call on the same two cores the server runs on, which made gRPC look slower than it is.

h2load knows HTTP statuses, not gRPC's (a failed call is an HTTP 200 whose trailers carry the
code), so the protocol comparison counts failed calls from the server's own
``torchgate_grpc_requests_total`` (protocols.py). Latency percentiles come from
h2load's per-request log.
"""

from __future__ import annotations

import math
import re
import resource
import shutil
import statistics
import subprocess
from dataclasses import replace
from pathlib import Path

from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import LoadPlan, LoadResult, LoadTarget

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
_FINISHED = re.compile(r"finished in ([\d.]+)(m?s)")
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)


def find_h2load() -> str | None:
    return shutil.which("h2load")


def framed(message: bytes) -> bytes:
    """A gRPC message on the wire: uncompressed flag, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def latencies_ms(log: str) -> list[float]:
    """Each request's time in ms from h2load's log (start, HTTP status, elapsed microseconds)."""
    times = []
    for line in log.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] == "200":
            times.append(int(fields[2]) / 1000)
    return sorted(times)


def parse_output(stdout: str, log: str, images_per_request: int = 0) -> LoadResult:
    """The LoadResult of one h2load run: its summary lines and its per-request log."""
    finished, counts = _FINISHED.search(stdout), _REQUESTS.search(stdout)
    if finished is None or counts is None:
        raise ValueError(f"h2load printed no summary; its output was:\n{stdout}")
    duration_s = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    _, done, succeeded, failed, errored, timeout = (int(g) for g in counts.groups())
    times = latencies_ms(log)
    return LoadResult(
        tool="h2load",
        requests=done + errored + timeout,
        errors=failed + errored + timeout + (done - succeeded - failed),
        duration_s=duration_s,
        latency=LatencySummary(
            p50_ms=_percentile(times, 0.50),
            p90_ms=_percentile(times, 0.90),
            p99_ms=_percentile(times, 0.99),
            mean_ms=statistics.fmean(times) if times else math.nan,
            max_ms=times[-1] if times else math.nan,
        ),
        images_per_request=images_per_request,
        error_kinds={
            kind: count
            for kind, count in (("status", failed), ("transport", errored), ("timeout", timeout))
            if count
        },
    )


def _run_once(
    executable: str, url: str, body: Path, plan: LoadPlan, seconds: float, log: Path
) -> subprocess.CompletedProcess[str]:
    command = [
        executable,
        f"--clients={plan.concurrency}",
        "--max-concurrent-streams=1",  # one call in flight per connection, as wrk's
        f"--threads={1 if plan.concurrency < 16 else 2}",
        f"--duration={max(1000, round(seconds * 1000))}ms",  # whole units only
        f"--data={body}",
        f"--log-file={log}",
        *(f"--header={header}" for header in GRPC_HEADERS),
        url,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + plan.timeout_s + 30, check=True
    )


def run_h2load(target: LoadTarget, plan: LoadPlan, workdir: Path, executable: str) -> LoadResult:
    """Warm up (not counted), then the measured run; ``target`` is a ``grpc://`` one."""
    assert target.body_path is not None
    address = target.url.split("://", 1)[1]
    url = f"http://{address}{target.method}"
    body = workdir / f"{target.body_path.stem}.grpc-frame"
    body.write_bytes(framed(target.body_path.read_bytes()))
    log = workdir / "h2load.log"
    if plan.warmup_s > 0:
        _run_once(executable, url, body, plan, plan.warmup_s, log)
    log.unlink(missing_ok=True)  # h2load writes none when no call finished: no stale latencies
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = _run_once(executable, url, body, plan, plan.duration_s, log)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu_s = (children.ru_utime - children_before.ru_utime) + (
        children.ru_stime - children_before.ru_stime
    )
    text = log.read_text() if log.exists() else ""
    result = parse_output(completed.stdout, text, target.images_per_request)
    return replace(result, client_cpu_s=client_cpu_s)
