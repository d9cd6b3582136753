"""A closed-loop load generator on asyncio: httpx for HTTP, grpc.aio for ``grpc://`` targets
(bench/torchgate_bench/grpc_load.py), for machines without ``wrk`` and for gRPC.

It runs as its own process (``python -m torchgate_bench.loadgen ...``, one JSON document on stdout)
so that its CPU time is never charged to the interpreter of the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from torchgate_bench.grpc_load import grpc_senders
from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import GRPC_SCHEME, LoadPlan, LoadResult, LoadTarget, Send


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def _phase(senders: list[Send], seconds: float) -> _Tally:
    """One worker per sender, each sending its next request as soon as its previous one is
    answered.

    Only exchanges that end inside the window count; the ones still in flight at the end are
    awaited (so no connection is torn down mid-request) but not counted.
    """
    tally = _Tally()
    end = time.perf_counter() + seconds

    async def worker(send: Send) -> None:
        while (sent := time.perf_counter()) < end:
            kind = await send()
            done = time.perf_counter()
            if done > end:
                return
            if kind != "timeout" and kind != "transport":
                tally.latencies.append(done - sent)
            if kind is not None:
                tally.errors[kind] += 1

    await asyncio.gather(*(worker(send) for send in senders))
    return tally


@asynccontextmanager
async def _http_senders(
    target: LoadTarget, body: bytes | None, plan: LoadPlan
) -> AsyncIterator[list[Send]]:
    headers = dict(target.headers)
    if target.content_type:
        headers["content-type"] = target.content_type
    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=plan.timeout_s) as client:

        async def send() -> str | None:
            try:
                response = await client.request(
                    target.method, target.url, content=body, headers=headers
                )
            except httpx.TimeoutException:
                return "timeout"
            except httpx.TransportError:
                return "transport"
            return None if 200 <= response.status_code < 300 else "status"

        yield [send] * plan.concurrency


async def drive(target: LoadTarget, plan: LoadPlan) -> LoadResult:
    """Warm up (not counted), then measure for ``plan.duration_s``."""
    body = target.body_path.read_bytes() if target.body_path is not None else None
    if target.url.startswith(GRPC_SCHEME):
        senders = grpc_senders(target, body or b"", plan)
    else:
        senders = _http_senders(target, body, plan)
    async with senders as workers:
        if plan.warmup_s > 0:
            await _phase(workers, plan.warmup_s)
        cpu_before = time.process_time()
        tally = await _phase(workers, plan.duration_s)
        client_cpu_s = time.process_time() - cpu_before
    errors = sum(tally.errors.values())
    return LoadResult(
        tool="grpc.aio" if target.url.startswith(GRPC_SCHEME) else "httpx",
        requests=len(tally.latencies) + tally.errors["timeout"] + tally.errors["transport"],
        errors=errors,
        duration_s=plan.duration_s,
        latency=LatencySummary.from_seconds(tally.latencies),
        images_per_request=target.images_per_request,
        error_kinds=dict(tally.errors),
        client_cpu_s=client_cpu_s,
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
    args += [f"--header={name}:{value}" for name, value in target.headers]
    return args


def generator_processes(concurrency: int, cores: int | None = None) -> int:
    """One client process sends a few thousand requests/s at most, less than a 16-core GPU
    host serves: up to 4 processes, each with at least 16 connections and 4 of the cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(4, concurrency // 16, cores // 4))


def combine(results: list[LoadResult]) -> LoadResult:
    """Processes that ran side by side: counts add up over the same window; latency is the
    one of the process with the median rate (percentiles of separate runs do not combine)."""
    middle = sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]
    kinds: Counter[str] = Counter()
    for result in results:
        kinds.update(result.error_kinds or {})
    cpu = [r.client_cpu_s for r in results]
    return replace(
        middle,
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        error_kinds=dict(kinds),
        client_cpu_s=None if None in cpu else sum(c for c in cpu if c is not None),
    )


def run_loadgen(target: LoadTarget, plan: LoadPlan, processes: int | None = None) -> LoadResult:
    """Run the generator in child interpreters (``processes``, default generator_processes,
    sharing the connections) and read back their JSON results."""
    count = processes or generator_processes(plan.concurrency)
    shares = [plan.concurrency // count + (i < plan.concurrency % count) for i in range(count)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torchgate_bench.loadgen",
                *_arguments(target, replace(plan, concurrency=share)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for share in shares
        if share > 0
    ]
    results = []
    try:
        for child in children:
            stdout, stderr = child.communicate(
                timeout=plan.warmup_s + plan.duration_s + 2 * plan.timeout_s + 60
            )
            if child.returncode != 0:
                raise RuntimeError(f"the load generator failed:\n{stderr.strip()}")
            results.append(LoadResult.from_dict(json.loads(stdout)))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return results[0] if len(results) == 1 else combine(results)


def _parse(argv: list[str] | None) -> tuple[LoadTarget, LoadPlan]:
    parser = argparse.ArgumentParser(prog="python -m torchgate_bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", type=Path, default=None, help="file whose bytes are sent")
    parser.add_argument("--content-type", default=None)
    parser.add_argument("--header", action="append", default=[], help="NAME:VALUE")
    parser.add_argument("--images-per-request", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    ns = parser.parse_args(argv)
    headers = tuple((name, value) for name, _, value in (h.partition(":") for h in ns.header))
    target = LoadTarget(ns.url, ns.method, ns.body, ns.content_type, ns.images_per_request, headers)
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
