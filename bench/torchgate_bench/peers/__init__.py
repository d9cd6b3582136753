"""``python -m torchgate_bench bench --peer torchserve|litserve|fastapi|all``: torchgate's cnn
against peer model servers serving the same model, in one run.

torchgate runs as users start it (``python -m app serve``, its default six models; offline,
the three ImageNet models get random weights under their official names, as ``bench
--startup`` does). Each peer serves this repository's cnn (``app/nets/cnn.py``, the
``models/cnn.json`` manifest and its checkpoint) through ``fashion.py``, which repeats
torchgate's preprocessing; both answer the same PNG with the same top-1 and probabilities
(within 1e-5), checked before any load. The load: ``wrk`` at c=32, one 28x28 PNG per request
as a raw body, torchgate's ``POST /v1/models/cnn/predict`` against the peer's endpoint, in
alternating rounds (torchgate first in even rounds, the peer first in odd ones) with a
``/healthz`` slice in each. For TorchServe and LitServe a pre-pass tries a small grid
(workers 1-2 x batch 1/8, 5 ms delay, threads = cores // workers) and keeps the fastest.

How to run (the peers' venv once: see ``../shared/peers/README.md``)::

    python3 -m venv /tmp/peers/venv
    /tmp/peers/venv/bin/pip install torch==2.14.1 torchvision==0.29.1 torchserve \
        torch-model-archiver litserve captum python-multipart      # Java 17 for TorchServe
    python -m torchgate_bench bench --peer torchserve --rounds 5 --duration 10
    python -m torchgate_bench bench --peer all    # TorchServe, LitServe and plain FastAPI in turn
    # --weights-dir DIR keeps the random ImageNet weights between runs (saves ~40 s each)

Printed: nproc and the load average (start and end), the pre-pass table and the chosen
configuration, per-round req/s, p50/p99 and errors of both sides, /healthz req/s, and the
medians of the rounds' torchgate/peer and served/healthz ratios. ``--json`` prints the same
as one JSON document instead; ``--json-out PATH`` writes it to a file as well. Every run
also writes its results record (``records.py``) into ``--results-dir`` (``bench/results/``).

``--peer triton,kserve`` (or ``all``, after the three above) is the Open Inference Protocol
family, the live servers PyTorch users pick now that TorchServe is archived: Triton (through
PyTriton: C++ HTTP/gRPC front end, dynamic batcher, the model in Python) and KServe's Python
model server (FastAPI + uvicorn, grpc.aio), each from its own venv (``--triton-python``,
``--kserve-python``; set-up in ``../shared/peers/v2/README.md``). One request, byte for byte,
for every server: the cnn's tensor (FP32 [1,1,28,28], the PNG as torchgate preprocesses it)
over v2 REST with the binary tensor extension and over gRPC in ``raw_input_contents``, and a
seeded FP32 [1,3,224,224] for resnet101 (from the same random weights file torchgate loads).
Each peer's pre-pass (Triton: instances 1-2 x threads x batcher delay 0.5/2 ms, max batch 32;
KServe: workers 1-2 x threads) keeps the fastest configuration per model; then every server
answers every request once (same top class, probabilities within 1e-5), and the rounds load
each series in turn: the cnn at c=32 through torchgate's v2 REST, its v1 raw-PNG path, each
peer's REST, then gRPC; resnet101 at c=8 over both. Printed and recorded (kind ``v2-peers``):
the medians, p99 per server, and torchgate's ratios to each peer (resnet101: to the better).

    python -m torchgate_bench bench --peer triton,kserve          # 3 rounds x 10 s per series

Files of the v2 family: ``triton_app.py``, ``kserve_app.py`` and ``v2_nets.py`` (run in the
peers' venvs), ``v2_requests.py`` (the request bytes), ``v2_servers.py`` (start/stop, the
grid), ``v2_answers.py``, ``v2_prepass.py``, ``v2_compare.py`` (series, rounds, ratios),
``v2_run.py``, ``v2_options.py``, ``v2_command.py``, ``v2_report.py`` and ``v2_records.py``.

Files: ``fashion.py`` (the cnn's request path, no torchgate imports), ``torchserve_handler.py``
+ ``archive.py`` (the ``.mar``), ``litserve_app.py``, ``fastapi_app.py`` (peer servers, run
as scripts), ``cnn_files.py`` (what they serve), ``requirements.py`` (what each needs, its
versions), ``servers.py`` (start/stop, whole process group), ``configs.py`` (the grid),
``compare.py`` (rounds and ratios), ``answers.py`` (same answer), ``run.py``, ``command.py``,
``report.py`` and ``records.py``.
"""
