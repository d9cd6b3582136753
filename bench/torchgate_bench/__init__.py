"""``python -m torchgate_bench bench``: drive a real server with closed-loop load and compare it with the
model's raw in-process throughput on the same machine.

The load runs in a separate process (``wrk``, or the asyncio client in ``loadgen``) and the raw
measurement in another, so neither shares an interpreter with the server it judges.
"""
