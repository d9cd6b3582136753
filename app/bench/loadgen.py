"""A closed-loop HTTP load generator on asyncio + httpx, for machines without ``wrk``.

It runs as its own process (``python -m app.bench.loadgen ...``, one JSON document on stdout)
so that its CPU time is never charged to the interpreter of the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.bench.latency import LatencySummary
from app.bench.load import LoadPlan, LoadResult, LoadTarget


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def _phase(
    client: httpx.AsyncClient,
    target: LoadTarget,
    body: bytes | None,
    plan: LoadPlan,
    seconds: float,
) -> _Tally:
    """C workers, each sending its next request as soon as its previous one is answered.

    Only exchanges that end inside the window count; the ones still in flight at the end are
    awaited (so no connection is torn down mid-request) but not counted.
    """
    tally = _Tally()
    headers = {"content-type": target.content_type} if target.content_type else {}
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while (sent := time.perf_counter()) < end:
            kind: str | None = None
            try:
                response = await client.request(
                    target.method, target.url, content=body, headers=headers
                )
                if not 200 <= response.status_code < 300:
                    kind = "status"
            except httpx.TimeoutException:
                kind = "timeout"
            except httpx.TransportError:
                kind = "transport"
            done = time.perf_counter()
            if done > end:
                return
            if kind != "timeout" and kind != "transport":
                tally.latencies.append(done - sent)
            if kind is not None:
                tally.errors[kind] += 1

    await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    return tally


async def drive(target: LoadTarget, plan: LoadPlan) -> LoadResult:
    """Warm up (not counted), then measure for ``plan.duration_s``."""
    body = target.body_path.read_bytes() if target.body_path is not None else None
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=plan.timeout_s) as client:
        if plan.warmup_s > 0:
            await _phase(client, target, body, plan, plan.warmup_s)
        tally = await _phase(client, target, body, plan, plan.duration_s)
    errors = sum(tally.errors.values())
    return LoadResult(
        tool="httpx",
        requests=len(tally.latencies) + tally.errors["timeout"] + tally.errors["transport"],
        errors=errors,
        duration_s=plan.duration_s,
        latency=LatencySummary.from_seconds(tally.latencies),
        images_per_request=target.images_per_request,
        error_kinds=dict(tally.errors),
    )


def _arguments(target: LoadTarget, plan: LoadPlan) -> list[str]:
    args = [
        f"--url={target.url}",
        f"--method={target.method}",
        f"--images-per-request={target.images_per_request}",
        f"--concurrency={plan.concurrency}",
        f"--duration={plan.duration_s}",
        f"--warmup={plan.warmup_s}",
        f"--timeout={plan.timeout_s}",
    ]
    if target.body_path is not None:
        args.append(f"--body={target.body_path}")
    if target.content_type is not None:
        args.append(f"--content-type={target.content_type}")
    return args


def run_loadgen(target: LoadTarget, plan: LoadPlan) -> LoadResult:
    """Run the generator in a child interpreter and read back its JSON result."""
    completed = subprocess.run(
        [sys.executable, "-m", "app.bench.loadgen", *_arguments(target, plan)],
        capture_output=True,
        text=True,
        timeout=plan.warmup_s + plan.duration_s + 2 * plan.timeout_s + 60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{completed.stderr.strip()}")
    return LoadResult.from_dict(json.loads(completed.stdout))


def _parse(argv: list[str] | None) -> tuple[LoadTarget, LoadPlan]:
    parser = argparse.ArgumentParser(prog="python -m app.bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", type=Path, default=None, help="file whose bytes are sent")
    parser.add_argument("--content-type", default=None)
    parser.add_argument("--images-per-request", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    ns = parser.parse_args(argv)
    target = LoadTarget(ns.url, ns.method, ns.body, ns.content_type, ns.images_per_request)
    return target, LoadPlan(ns.concurrency, ns.duration, ns.warmup, ns.timeout)


def main(argv: list[str] | None = None) -> None:
    target, plan = _parse(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(drive(target, plan))
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")


if __name__ == "__main__":
    main()
