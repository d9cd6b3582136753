"""torchgate's benchmarks, a package apart from the service it measures (``bench/``).

``python -m torchgate_bench bench`` drives a real server with closed-loop load and compares it
with the model's raw in-process throughput on the same machine; ``soak``, ``bench-replicas``
and ``bench-graphs`` measure memory growth, the shared store and the graph modes. The load
runs in a separate process (``wrk``, or the asyncio client in ``loadgen``) and the raw
measurement in another, so neither shares an interpreter with the server it judges. Every
measuring run writes one JSON document into ``bench/results/`` (``results.py``).
"""
