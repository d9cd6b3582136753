"""The peer comparison (``bench --peer``): configurations, round math, the peers' cnn path held
to torchgate's, TorchServe's handler on a batch, and a real run against the plain-FastAPI peer."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import torchgate_bench.peers
from app.serving.inputs import FashionInput
from app.serving.loading import WeightsLocation, load_model
from app.zoo import SPECS
from tests.helpers.peer_pythons import stand_in_v2_pythons
from tests.helpers.programs import require_binary
from tests.helpers.repo import REPO_ROOT
from tests.helpers.results import check_document
from torchgate_bench.__main__ import cli
from torchgate_bench.images import garment_png, photo_jpeg
from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import LoadResult
from torchgate_bench.peers.answers import compare_answers
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.compare import (
    TORCHGATE,
    GridEntry,
    PeerComparison,
    Round,
    best_config,
    round_order,
)
from torchgate_bench.peers.configs import PeerConfig, parse_grid
from torchgate_bench.peers.fashion import FashionModel
from torchgate_bench.peers.records import peers_record
from torchgate_bench.peers.run import PeersOptions
from torchgate_bench.peers.servers import PeerServer, _group_alive
from torchgate_bench.results import ResultsRun

MANIFEST = REPO_ROOT / "models" / "cnn.json"
CNN_FILES = CnnFiles.in_repository(REPO_ROOT / "models")


def _result(requests: int, seconds: float = 1.0, errors: int = 0, p99: float = 9.0) -> LoadResult:
    latency = LatencySummary(p50_ms=p99 / 2, p90_ms=p99, p99_ms=p99, mean_ms=p99 / 2, max_ms=p99)
    return LoadResult("wrk", requests, errors, seconds, latency, images_per_request=1)


def test_the_grid_shares_the_cores_between_workers() -> None:
    configs = parse_grid("1x1, 1x8,2X8", cores=2, delay_ms=5)
    assert [(c.workers, c.threads, c.batch_size) for c in configs] == [
        (1, 2, 1),
        (1, 2, 8),
        (2, 1, 8),
    ]
    assert configs[1].label == "1 worker(s) x 2 thread(s), batch 8, delay 5 ms"
    assert parse_grid("2x1", cores=1)[0].threads == 1  # never zero threads


def test_a_peer_without_batching_keeps_each_worker_count_once() -> None:
    configs = parse_grid("1x1,1x8,2x1,2x8", cores=2, batching=False)
    assert [(c.workers, c.batch_size) for c in configs] == [(1, 1), (2, 1)]


@pytest.mark.parametrize("spec", ["1x", "x8", "2y8", "0x8", "1x0", ""])
def test_a_bad_grid_says_how_to_write_one(spec: str) -> None:
    with pytest.raises(ValueError, match=r"WORKERSxBATCH|start at 1"):
        parse_grid(spec, cores=2)


def test_rounds_alternate_which_side_goes_first() -> None:
    orders = [round_order(i, "torchserve") for i in range(4)]
    assert orders == [
        (TORCHGATE, "torchserve"),
        ("torchserve", TORCHGATE),
        (TORCHGATE, "torchserve"),
        ("torchserve", TORCHGATE),
    ]


def test_the_ratio_is_the_median_of_each_rounds_ratio() -> None:
    comparison = PeerComparison("torchserve", PeerConfig())
    # torchgate/peer per round: 2.0, 1.0, 3.0 -> median 2.0 (the ratio of medians would be 1.5)
    for ours, theirs, healthz in ((200, 100, 400), (300, 300, 600), (150, 50, 1000)):
        comparison.rounds.append(
            Round(("torchgate", "torchserve"), _result(ours), _result(theirs), _result(healthz))
        )
    assert comparison.median_ratio == pytest.approx(2.0)
    assert comparison.median_served_over_healthz == pytest.approx(0.5)  # 0.5, 0.5, 0.15
    assert comparison.median("torchgate", "requests_per_s") == pytest.approx(200)
    document = comparison.to_dict()
    assert [r["ratio"] for r in document["rounds"]] == pytest.approx([2.0, 1.0, 3.0])
    json.dumps(document)  # the --json-out document


def test_errors_do_not_count_as_served() -> None:
    entry = Round(("torchgate", "fastapi"), _result(100, errors=50), _result(100))
    assert entry.ratio == pytest.approx(0.5)
    assert entry.served_over_healthz is None  # no /healthz slice: no ratio invented
    assert Round(("torchgate", "fastapi"), _result(100), _result(0)).ratio is None


def test_the_best_configuration_is_the_fastest_one_without_errors() -> None:
    slow, fast, broken, failed = (PeerConfig(batch_size=b) for b in (1, 8, 16, 32))
    grid = [
        GridEntry(slow, _result(100)),
        GridEntry(fast, _result(150)),
        GridEntry(broken, _result(400, errors=3)),
        GridEntry(failed, None, "worker died"),
    ]
    assert best_config(grid) == fast
    assert best_config([GridEntry(broken, _result(400, errors=3))]) == broken
    with pytest.raises(ValueError):
        best_config([GridEntry(failed, None, "worker died")])


def _codec() -> FashionInput:
    normalization = json.loads(MANIFEST.read_text())["normalization"]
    return FashionInput(mean=normalization["mean"], std=normalization["std"])


def _rgb_png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg().data)).resize(size).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image", [garment_png().data, _rgb_png((40, 30))], ids=["28x28 grey", "40x30 rgb"]
)
def test_the_peers_preprocess_as_torchgate_does(image: bytes) -> None:
    peer = FashionModel(CNN_FILES.model_file, CNN_FILES.manifest)
    assert torch.equal(peer.preprocess(image), _codec().from_image(image, max_pixels=10**7))


def test_the_peers_run_torchgates_network_and_weights() -> None:
    where = WeightsLocation(Path("unused"), REPO_ROOT / "models", download=False, verify=True)
    ours = load_model(SPECS["cnn"], where, torch.device("cpu"))
    peer = FashionModel(CNN_FILES.model_file, CNN_FILES.manifest)
    batch = torch.stack([_codec().from_image(garment_png(seed).data, 10**7) for seed in range(4)])
    with torch.inference_mode():
        expected = ours.module(batch)
    # the same weights to float32 rounding: oneDNN picks its kernels (and summation order) by
    # CPU and memory format, which moved one logit by 1.01e-6 on an AMD EPYC; other weights
    # would differ in the first digit
    torch.testing.assert_close(peer.forward(batch), expected, rtol=1e-5, atol=1e-5)
    assert peer.labels == list(ours.labels)


def _handler_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The TorchServe handler; where TorchServe is not installed (CI), over a BaseHandler that
    has just what the handler uses of it (TorchServe's calls inference() between the two)."""
    try:
        import ts.torch_handler.base_handler  # noqa: F401
    except ImportError:
        base = types.ModuleType("ts.torch_handler.base_handler")
        base.BaseHandler = type("BaseHandler", (), {})  # type: ignore[attr-defined]
        for name in ("ts", "ts.torch_handler"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, "ts.torch_handler.base_handler", base)
    # loaded from its file under a name of its own, as TorchServe loads it, and not kept in
    # sys.modules: whatever imports the handler later gets the real one
    path = Path(torchgate_bench.peers.__file__).parent / "torchserve_handler.py"
    spec = importlib.util.spec_from_file_location("torchserve_handler_under_test", path)
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    return handler


def test_the_torchserve_handler_answers_each_request_of_a_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    handler_module = _handler_module(monkeypatch)
    manifest = json.loads(MANIFEST.read_text())
    # the .mar's layout: every file flat in the model dir
    shutil.copy(CNN_FILES.model_file, tmp_path / "cnn.py")
    shutil.copy(MANIFEST, tmp_path / "cnn.json")
    shutil.copy(MANIFEST.parent / manifest["checkpoint"], tmp_path / manifest["checkpoint"])
    context = types.SimpleNamespace(
        system_properties={"model_dir": str(tmp_path)},
        manifest={"model": {"modelFile": "cnn.py", "serializedFile": manifest["checkpoint"]}},
        model_yaml_config={},
    )
    handler = handler_module.FashionHandler()
    handler.initialize(context)
    images = [garment_png(seed).data for seed in range(3)]
    rows = [
        {"body": images[0]},  # raw body
        {"data": bytearray(images[1])},  # multipart field 'data'
        {"body": base64.b64encode(images[2]).decode()},  # base64 text
    ]
    batch = handler.preprocess(rows)
    assert batch.shape == (3, 1, 28, 28)
    with torch.inference_mode():
        answers = handler.postprocess(handler.model(batch))
    assert len(answers) == 3
    for answer, image in zip(answers, images, strict=True):
        assert len(answer["probabilities"]) == len(manifest["classes"])
        assert math.isclose(sum(answer["probabilities"]), 1.0, rel_tol=1e-5)
        single = handler.fashion.predict([image])[0]  # a batch of one gives the same answer
        assert answer["index"] == single["index"]
        assert answer["label"] == manifest["classes"][answer["index"]]
    with pytest.raises(ValueError, match="image as the request body"):
        handler_module.request_body({"body": None})


def _v1_answer(probabilities: list[float], labels: list[str]) -> dict[str, object]:
    ranked = sorted(enumerate(probabilities), key=lambda pair: -pair[1])
    entries = [{"index": i, "label": labels[i], "probability": p} for i, p in ranked]
    return {"model": "cnn", "predictions": [entries]}


def test_answers_must_agree_on_top1_and_every_probability() -> None:
    peer = FashionModel(CNN_FILES.model_file, CNN_FILES.manifest)
    answer = peer.predict([garment_png().data])[0]
    ours = _v1_answer(answer["probabilities"], peer.labels)
    verdict = compare_answers(ours, answer)
    assert verdict["match"] and verdict["max_abs_diff"] == 0
    nudged = [p + (2e-5 if i == 3 else 0.0) for i, p in enumerate(answer["probabilities"])]
    assert not compare_answers(_v1_answer(nudged, peer.labels), answer)["match"]
    top5 = {"predictions": [ours["predictions"][0][:5]]}
    with pytest.raises(ValueError, match="every class"):
        compare_answers(top5, answer)


@pytest.mark.parametrize(
    ("flags", "concurrency", "peers"),
    [
        (["--peer", "torchserve"], 32, ("torchserve",)),  # the c=32 unless told
        (["--peer", "all", "--concurrency", "8"], 8, ("torchserve", "litserve", "fastapi")),
    ],
)
def test_the_command_passes_its_options_to_the_peer_run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    flags: list[str],
    concurrency: int,
    peers: tuple[str, ...],
) -> None:
    seen: list[PeersOptions] = []
    # "all" checks the v2 family's venvs before the v1 run
    for peer, python in stand_in_v2_pythons(tmp_path).items():
        flags = [*flags, f"--{peer}-python", str(python)]

    def refuse(options: PeersOptions) -> None:
        seen.append(options)
        raise RuntimeError("not this time")

    monkeypatch.setattr("torchgate_bench.peers.run.run_peers", refuse)
    flags += ["--rounds", "3", "--duration", "4", "--peer-grid", "2x8"]
    outcome = CliRunner().invoke(cli, ["bench", *flags])
    assert outcome.exit_code == 1 and "error: not this time" in outcome.output
    (options,) = seen
    assert (options.concurrency, options.peers) == (concurrency, peers)
    assert (options.rounds, options.duration_s, options.grid) == (3, 4.0, "2x8")


def test_the_command_refuses_a_bad_grid() -> None:
    outcome = CliRunner().invoke(cli, ["bench", "--peer", "fastapi", "--peer-grid", "2y8"])
    assert outcome.exit_code == 2
    assert "WORKERSxBATCH" in outcome.output


def test_a_missing_peer_environment_is_named_before_anything_starts(tmp_path: Path) -> None:
    from torchgate_bench.peers.run import run_peers

    options = PeersOptions(peers=("fastapi", "litserve"), peers_python=tmp_path / "python")
    with pytest.raises(RuntimeError, match=r"litserve runs in its own venv.*pip install"):
        run_peers(options)


@pytest.mark.integration
def test_stopping_a_peer_ends_its_whole_process_group(tmp_path: Path) -> None:
    config = PeerConfig(workers=2, threads=1)  # uvicorn's supervisor and two workers
    with PeerServer("fastapi", config, CNN_FILES, tmp_path) as server:
        image = garment_png().data
        response = httpx.post(server.predict_url, content=image, timeout=30)
        assert response.status_code == 200, response.text
        bad = httpx.post(server.predict_url, content=b"not an image", timeout=30)
        assert bad.status_code == 400 and "image" in bad.json()["detail"]
        group = server.pid
        assert _group_alive(group)
    assert not _group_alive(group)


@pytest.mark.integration
def test_a_real_run_against_the_plain_fastapi_peer(tmp_path: Path) -> None:
    require_binary("wrk", "wrk")
    from torchgate_bench.peers.report import render
    from torchgate_bench.peers.run import run_peers

    options = PeersOptions(
        peers=("fastapi",),
        concurrency=4,
        rounds=2,
        duration_s=1.0,
        warmup_s=0.0,
        grid="1x1",
        checkpoint_dir=REPO_ROOT / "models",
        weights_dir=tmp_path / "weights",  # none: only the cnn is loaded here, to keep it short
        extra_env={"TORCHGATE_MODELS": "cnn", "TORCHGATE_GRPC_PORT": "0"},
        load_tool="wrk",
    )
    result = run_peers(options)
    (comparison,) = result.comparisons
    assert comparison.answers["match"]
    assert [entry.order[0] for entry in comparison.rounds] == [TORCHGATE, "fastapi"]
    for entry in comparison.rounds:
        assert entry.torchgate.errors == entry.peer.errors == 0
        assert entry.torchgate.requests > 0 and entry.peer.requests > 0
        assert entry.ratio is not None and entry.served_over_healthz is not None
    document = json.loads(json.dumps(result.to_document()))
    assert document["nproc"] >= 1 and len(document["load_average_end"]) == 3
    assert document["peers"][0]["median_ratio"] == pytest.approx(comparison.median_ratio)
    console = Console(record=True, width=220)
    render(result, console)
    assert f"torchgate / fastapi: {comparison.median_ratio:.2f}x" in console.export_text()

    record = check_document(ResultsRun(tmp_path).document(peers_record(result)), "peers")
    assert record["title"] == "cnn at c=4: torchgate against fastapi"
    assert [row[0] for row in record["rows"]] == ["torchgate", "fastapi"]
    assert record["rows"][0][1] == comparison.median("torchgate", "requests_per_s")
    ratio = record["ratios"]["torchgate / fastapi (median of rounds)"]
    assert ratio == pytest.approx(comparison.median_ratio)
    assert [entry["round"] for entry in record["rounds"]] == [1, 2]
    assert record["versions"]["fastapi"] and record["versions"]["uvicorn"]


@pytest.mark.integration
@pytest.mark.skipif(
    os.environ.get("TORCHGATE_TEST_TORCHSERVE") != "1",
    reason="TorchServe needs Java 17 and its own venv (../shared/peers); opt in with "
    "TORCHGATE_TEST_TORCHSERVE=1",
)
def test_a_real_run_against_torchserve(tmp_path: Path) -> None:
    require_binary("wrk", "wrk")
    from torchgate_bench.peers.run import run_peers

    options = PeersOptions(
        peers=("torchserve",),
        concurrency=8,
        rounds=2,
        duration_s=1.0,
        warmup_s=1.0,
        grid="1x1,1x8",
        checkpoint_dir=REPO_ROOT / "models",
        weights_dir=tmp_path / "weights",
        extra_env={"TORCHGATE_MODELS": "cnn", "TORCHGATE_GRPC_PORT": "0"},
        load_tool="wrk",
    )
    (comparison,) = run_peers(options).comparisons
    assert comparison.answers["match"]
    assert [entry.result is not None for entry in comparison.grid] == [True, True]
    assert all(entry.peer.errors == 0 and entry.peer.requests > 0 for entry in comparison.rounds)
