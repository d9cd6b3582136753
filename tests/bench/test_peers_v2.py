"""The Open Inference Protocol comparison (``bench --peer triton,kserve``) without its servers:
the one request every server gets, the answers check, the pre-pass choice, the rounds' ratios,
the results record and the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.tensors import read_inputs as read_grpc_inputs
from app.api.v2_schemas import InferenceRequest
from app.api.v2_tensors import read_inputs, split_body
from app.serving.inputs import FashionInput
from tests.helpers.peer_pythons import stand_in_v2_pythons
from tests.helpers.repo import REPO_ROOT
from tests.helpers.results import check_document
from torchgate_bench.__main__ import cli
from torchgate_bench.images import garment_png
from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import LoadResult
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.command import split_peers
from torchgate_bench.peers.compare import GridEntry
from torchgate_bench.peers.v2_answers import judge, verdict
from torchgate_bench.peers.v2_compare import Measurements, Series, plan_series, round_series
from torchgate_bench.peers.v2_options import V2Options, V2PeersResult
from torchgate_bench.peers.v2_prepass import chosen_config, ranked_configs
from torchgate_bench.peers.v2_records import KIND, v2_peers_record
from torchgate_bench.peers.v2_requests import (
    cnn_tensor,
    decode_grpc_request,
    grpc_message,
    grpc_probabilities,
    imagenet_tensor,
    rest_body,
    rest_probabilities,
    write_request,
)
from torchgate_bench.peers.v2_run import _start_peers
from torchgate_bench.peers.v2_servers import V2Config, peer_grid, remove_model_folders
from torchgate_bench.results import ResultsRun

CNN_FILES = CnnFiles.in_repository(REPO_ROOT / "models")


def _result(requests: int, errors: int = 0, p99: float = 9.0) -> LoadResult:
    latency = LatencySummary(p50_ms=p99 / 2, p90_ms=p99, p99_ms=p99, mean_ms=p99 / 2, max_ms=p99)
    return LoadResult("wrk", requests, errors, 1.0, latency, images_per_request=1)


@pytest.mark.parametrize("tensor", [cnn_tensor(garment_png().data, CNN_FILES), imagenet_tensor()])
def test_the_rest_body_and_the_grpc_message_carry_the_same_tensor(tensor: np.ndarray) -> None:
    body, header_length = rest_body(tensor)
    header, binary = split_body(body, str(header_length))  # as torchgate's v2 route reads it
    request = InferenceRequest.model_validate_json(header)
    (rest,) = read_inputs(request.inputs, binary)
    assert (rest.name, rest.datatype, rest.binary) == ("input", "FP32", True)
    assert [output.name for output in request.outputs or []] == ["probabilities"]
    message = grpc_message("cnn", tensor)
    (grpc,) = read_grpc_inputs(pb.ModelInferRequest.FromString(message))  # torchgate's servicer
    model, decoded = decode_grpc_request(message)
    assert model == "cnn"
    for found in (rest.data, grpc.data, decoded):
        assert isinstance(found, np.ndarray) and found.dtype == np.float32
        np.testing.assert_array_equal(found, tensor)


def test_the_cnn_tensor_is_what_torchgate_makes_of_the_png() -> None:
    manifest = json.loads(CNN_FILES.manifest.read_text())["normalization"]
    codec = FashionInput(mean=manifest["mean"], std=manifest["std"])
    expected = codec.from_image(garment_png().data, max_pixels=10**7).numpy()
    tensor = cnn_tensor(garment_png().data, CNN_FILES)
    assert tensor.shape == (1, 1, 28, 28)
    np.testing.assert_array_equal(tensor[0], expected)
    assert np.array_equal(imagenet_tensor(), imagenet_tensor())  # the same bytes every run


def test_the_request_files_are_the_bytes_the_checks_send(tmp_path: Path) -> None:
    request = write_request("cnn", cnn_tensor(garment_png().data, CNN_FILES), tmp_path)
    assert request.rest.body_path is not None and request.grpc.body_path is not None
    assert request.rest.body_path.read_bytes() == request.body
    assert request.grpc.body_path.read_bytes() == request.message
    assert dict(request.rest.headers) == {
        "Inference-Header-Content-Length": str(request.header_length)
    }
    assert request.grpc.method == "/inference.GRPCInferenceService/ModelInfer"


def test_answers_read_back_from_json_binary_and_grpc() -> None:
    probabilities = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    header = {"outputs": [{"name": "probabilities", "shape": [1, 3], "datatype": "FP32"}]}
    as_json = {"outputs": [{**header["outputs"][0], "data": probabilities.ravel().tolist()}]}
    np.testing.assert_array_equal(
        rest_probabilities(json.dumps(as_json).encode(), None), probabilities
    )
    labels = {"name": "labels", "shape": [1, 1], "parameters": {"binary_data_size": 7}}
    sized = {**header["outputs"][0], "parameters": {"binary_data_size": 12}}
    encoded = json.dumps({"outputs": [labels, sized]}).encode()
    body = encoded + b"\x03\0\0\0abc" + probabilities.tobytes()
    np.testing.assert_array_equal(rest_probabilities(body, len(encoded)), probabilities)
    raw = pb.ModelInferResponse(raw_output_contents=[probabilities.tobytes()])
    raw.outputs.add(name="probabilities", datatype="FP32", shape=[1, 3])
    np.testing.assert_array_equal(grpc_probabilities(raw.SerializeToString()), probabilities)
    typed = pb.ModelInferResponse()
    typed.outputs.add(name="probabilities", datatype="FP32", shape=[1, 3])
    typed.outputs[0].contents.fp32_contents.extend(probabilities.ravel().tolist())
    np.testing.assert_array_equal(grpc_probabilities(typed.SerializeToString()), probabilities)


def test_an_answer_must_have_the_top_class_and_every_probability() -> None:
    ours = np.array([[0.6, 0.3, 0.1]], dtype=np.float32)
    assert verdict(ours, ours + 1e-7, 1e-5)["match"]
    assert not verdict(ours, ours + np.array([[0, 2e-5, 0]]), 1e-5)["match"]
    assert not verdict(ours, ours[:, ::-1], 1.0)["match"]  # another top class
    assert not verdict(ours, ours[:, :2], 1.0)["match"]
    with pytest.raises(RuntimeError, match="kserve"):
        judge({"torchgate": ours, "triton": ours, "kserve": ours[:, ::-1]}, "torchgate")


def test_the_grid_offers_one_thread_and_a_share_of_the_cores() -> None:
    triton = [(c.instances, c.threads, c.delay_us) for c in peer_grid("triton", cores=2)]
    assert triton == [
        (1, 2, 500), (1, 2, 2000), (1, 1, 500), (1, 1, 2000), (2, 1, 500), (2, 1, 2000)
    ]  # fmt: skip
    kserve = peer_grid("kserve", cores=2)
    assert [(c.instances, c.threads, c.delay_us) for c in kserve] == [
        (1, 2, None),
        (1, 1, None),
        (2, 1, None),
    ]
    assert kserve[2].label == "2 worker(s) x 1 thread(s), no batcher"
    assert "delay 0.5 ms" in peer_grid("triton", cores=1)[0].label
    assert len(peer_grid("kserve", cores=1)) == 2  # one core: no separate one-thread entry


def test_the_prepass_keeps_the_fastest_configuration_without_errors() -> None:
    slow, fast, broken, dead = (V2Config(1, threads) for threads in (1, 2, 3, 4))
    grid = [
        GridEntry(slow, _result(100)),
        GridEntry(fast, _result(150)),
        GridEntry(broken, _result(400, errors=3)),
        GridEntry(dead, None, "did not start"),
    ]
    assert chosen_config(grid) == fast
    assert chosen_config([GridEntry(slow, None, "pre-pass off")]) == slow


def test_the_rounds_try_the_chosen_configuration_then_the_next_fastest() -> None:
    slow, fast, broken, dead = (V2Config(1, threads) for threads in (1, 2, 3, 4))
    grid = [
        GridEntry(dead, None, "did not start"),
        GridEntry(slow, _result(100)),
        GridEntry(broken, _result(400, errors=3)),
        GridEntry(fast, _result(150)),
    ]
    assert ranked_configs(grid) == [fast, slow, dead, broken]


class _Peers:
    """A stand-in for the run's setting: peers that start, except the configurations named."""

    def __init__(self, failing: set[V2Config]) -> None:
        self.failing, self.started, self.fallbacks = failing, [], []

    @contextmanager
    def peer(self, name: str, config: V2Config, folder: str) -> Iterator[str]:
        if config in self.failing:
            raise RuntimeError("kserve was not ready after 300 s")
        self.started.append((name, config))
        yield f"{name} {config.label}"


def test_a_peer_that_will_not_start_for_the_rounds_falls_back_and_says_so() -> None:
    two, one = V2Config(2, 1), V2Config(1, 1)
    grid = [GridEntry(two, _result(300)), GridEntry(one, _result(200))]
    grids = {"kserve": {"cnn": grid, "resnet101": grid}}
    configs = {"kserve": {"cnn": two, "resnet101": two}}
    setting = _Peers(failing={two})
    with ExitStack() as stack:
        peers = _start_peers(grids, configs, setting, stack)  # type: ignore[arg-type]
    assert configs == {"kserve": {"cnn": one, "resnet101": one}}  # the record says what ran
    assert setting.started == [("kserve", one)]  # one process for both models
    assert peers[("kserve", "cnn")] == peers[("kserve", "resnet101")] == f"kserve {one.label}"
    assert setting.fallbacks == [f"kserve: {two.label} did not start"]  # tried once
    with pytest.raises(RuntimeError, match="none of its configurations"), ExitStack() as stack:
        _start_peers(grids, configs, _Peers(failing={one, two}), stack)  # type: ignore[arg-type]


def _measured(rates: dict[str, list[int]], heavy: bool = True) -> Measurements:
    plan = plan_series(
        ("triton", "kserve"), 32, "resnet101" if heavy else None, 8, heavy_grpc=False
    )
    measurements = Measurements(plan)
    for series in plan:
        for rate in rates.get(series.key, [100, 100, 100]):
            measurements.add(series, _result(rate))
    return measurements


def test_a_round_loads_every_series_and_the_next_one_reverses_the_order() -> None:
    plan = plan_series(("triton", "kserve"), 32, "resnet101", 8)
    keys = [series.key for series in plan]
    assert keys[:7] == [
        "cnn v2 REST torchgate",
        "cnn v1 raw PNG torchgate",
        "cnn v2 REST triton",
        "cnn v2 REST kserve",
        "cnn gRPC torchgate",
        "cnn gRPC triton",
        "cnn gRPC kserve",
    ]
    assert {s.concurrency for s in plan if s.model == "resnet101"} == {8}
    assert len(plan) == 13  # resnet101 over REST and gRPC, three servers each
    assert round_series(plan, 1) == plan[::-1] and round_series(plan, 2) == plan


def test_the_ratios_are_medians_of_each_rounds_ratio() -> None:
    measured = _measured(
        {
            "cnn v2 REST torchgate": [200, 300, 150],
            "cnn v2 REST triton": [100, 300, 50],  # 2.0, 1.0, 3.0 -> 2.0
            "resnet101 v2 REST torchgate": [30, 30, 30],
            "resnet101 v2 REST triton": [10, 10, 10],
            "resnet101 v2 REST kserve": [20, 15, 25],  # the better peer: 20 by median
        }
    )
    ratios = measured.ratios()
    assert ratios["cnn v2 REST: torchgate / triton"] == pytest.approx(2.0)
    assert measured.round_ratios(*measured.ratio_pairs()["cnn v2 REST: torchgate / triton"]) == [
        pytest.approx(2.0),
        pytest.approx(1.0),
        pytest.approx(3.0),
    ]
    assert ratios["cnn: torchgate v2 REST / torchgate v1 raw PNG"] == pytest.approx(2.0)
    assert ratios["resnet101 v2 REST: torchgate / kserve (the better peer)"] == pytest.approx(1.5)
    assert "cnn gRPC: torchgate / kserve" in ratios and "cnn gRPC: torchgate / triton" in ratios
    assert not any("resnet101 v2 REST: torchgate / triton" in name for name in ratios)
    assert measured.median("cnn v2 REST torchgate", "requests_per_s") == pytest.approx(200)


def test_the_record_has_a_row_per_series_the_ratios_and_the_notes(tmp_path: Path) -> None:
    measured = _measured({}, heavy=True)
    grid = {"cnn": [GridEntry(V2Config(1, 1, 500), _result(900))]}
    grid["resnet101"] = [GridEntry(V2Config(1, 1, 500), _result(9))]
    chosen = {model: entries[0].config for model, entries in grid.items()}
    answers = {
        series.key: {"match": True, "top1": 3, "max_abs_diff": 1e-7, "tolerance": 1e-5}
        for series in measured.series
    }
    result = V2PeersResult(
        options=V2Options(rounds=3),
        tools={"v2": "wrk", "grpc": "h2load"},
        machine={"nproc": 2, "load_average": [1.0, 1.0, 1.0]},
        load_average_end=[1.0, 1.0, 1.0],
        torchgate={"random_weights": ["resnet101"], "models": {}, "cold_start_s": 5.0},
        configs={"triton": chosen, "kserve": chosen},
        prepass={"triton": grid, "kserve": grid},
        answers=answers,
        measurements=measured,
        inputs={},
        versions={"nvidia-pytriton": "0.7.0", "kserve": "0.21.0"},
    )
    document = check_document(ResultsRun(tmp_path).document(v2_peers_record(result)), KIND)
    assert document["title"].startswith("cnn at c=32, resnet101 at c=8: torchgate against triton")
    assert len(document["rows"]) == len(measured.series)
    assert document["rows"][0][:5] == ["cnn", "v2 REST", "torchgate", 32, 100.0]
    assert document["ratios"]["cnn v2 REST: torchgate / kserve"] == pytest.approx(1.0)
    assert [entry["round"] for entry in document["rounds"]] == [1, 2, 3]
    assert "cnn v2 REST: torchgate / triton" in document["rounds"][0]["ratios"]
    assert any("triton for resnet101: 1 instance(s) x 1 thread(s)" in n for n in document["notes"])
    assert document["versions"]["kserve"] == "0.21.0"
    json.dumps(result.to_document(), allow_nan=False, default=str)  # --json-out
    assert Series("cnn", "grpc", "kserve", 32).key == "cnn gRPC kserve"


def test_a_peer_list_is_split_into_the_two_families() -> None:
    assert split_peers("triton, KServe") == ((), ("triton", "kserve"))
    assert split_peers("kserve,fastapi") == (("fastapi",), ("kserve",))
    assert split_peers("all") == (("torchserve", "litserve", "fastapi"), ("triton", "kserve"))
    with pytest.raises(typer.BadParameter, match="choose from"):
        split_peers("triton,tgi")


def test_the_command_passes_its_options_to_the_v2_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[V2Options] = []

    def refuse(options: V2Options) -> None:
        seen.append(options)
        raise RuntimeError("not this time")

    monkeypatch.setattr("torchgate_bench.peers.v2_run.run_v2_peers", refuse)
    pythons = stand_in_v2_pythons(tmp_path)
    flags = ["--peer", "triton,kserve", "--duration", "4", "--no-prepass"]
    flags += ["--triton-python", str(pythons["triton"]), "--kserve-python", str(pythons["kserve"])]
    outcome = CliRunner().invoke(cli, ["bench", *flags])
    assert outcome.exit_code == 1 and "error: not this time" in outcome.output
    (options,) = seen
    assert (options.peers, options.concurrency, options.rounds) == (("triton", "kserve"), 32, 3)
    assert (options.duration_s, options.prepass, options.pythons) == (4.0, False, pythons)
    bad = CliRunner().invoke(cli, ["bench", "--peer", "tgi"])
    assert bad.exit_code == 2 and "choose from" in bad.output


def test_a_missing_v2_venv_stops_the_command_before_the_v1_family_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def never(options: object) -> None:
        raise AssertionError("the v1 family ran before the v2 venv was checked")

    monkeypatch.setattr("torchgate_bench.peers.run.run_peers", never)
    flags = ["--peer", "fastapi,kserve", "--kserve-python", str(tmp_path / "python")]
    outcome = CliRunner().invoke(cli, ["bench", *flags])
    assert outcome.exit_code == 1
    assert (
        "kserve runs in its own venv" in outcome.output and "pip install kserve" in outcome.output
    )


def test_a_missing_peer_venv_names_its_set_up_command(tmp_path: Path) -> None:
    from torchgate_bench.peers.v2_run import run_v2_peers

    options = V2Options(peers=("kserve",), pythons={"kserve": tmp_path / "python"})
    with pytest.raises(RuntimeError, match=r"kserve runs in its own venv.*pip install kserve"):
        run_v2_peers(options)


def test_a_killed_triton_leaves_no_model_folder_of_its_own(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "run" / "pytriton", tmp_path / "other" / "pytriton"
    for name, workspace in (("folderAbc123", ours), ("folderXyz789", theirs)):
        (tmp_path / name / "1").mkdir(parents=True)
        config = f'parameters {{ key: "workspace-path" value {{ string_value: "{workspace}" }} }}'
        (tmp_path / name / "config.pbtxt").write_text(config)
    remove_model_folders(ours, root=tmp_path)
    assert not (tmp_path / "folderAbc123").exists()
    assert (tmp_path / "folderXyz789").exists()  # another run's, or another user's
