"""AOTInductor packages: they agree with eager, are cached by weights, are swapped in while
requests flow, and never answer with stale weights after a parameter swap.

Each model is compiled by the same child process path the server uses (about 15 s each on two
cores), once per clone: the packages are kept in pytest's cache, keyed on what they depend on
(tests/helpers/compiled.py); every other test loads them from there.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from app.config import Settings
from app.metrics import Metrics
from app.serving import aot_builds
from app.serving.aot import CompiledGraph
from app.serving.aot_builds import GraphBuilder, GraphTarget, PackagePlan, obtain_graph
from app.serving.compiled_cache import STALE_TMP_S, PackageCache
from app.serving.forward import ModelForward
from app.serving.graphs import MAX_PROBABILITY_DIFF, max_difference
from app.serving.loading import LoadedModel, WeightsLocation, load_model
from app.serving.registry import ModelRegistry
from app.serving.reinit import InitPlan, reinitialize
from app.zoo import SPECS
from tests.helpers.compiled import package_cache_dir
from tests.helpers.programs import require_binary
from tests.helpers.repo import REPO_ROOT

MODELS = ("cnn", "lstm", "gan")
CPU = torch.device("cpu")


def _load(name: str) -> LoadedModel:
    where = WeightsLocation(REPO_ROOT / "models", REPO_ROOT / "models", False, False)
    return load_model(SPECS[name], where, CPU)


def _example(name: str, loaded: LoadedModel) -> Callable[[int], tuple[torch.Tensor, ...]]:
    if loaded.codec is not None:
        return loaded.codec.example
    latent = SPECS[name].latent_size
    return lambda b: (torch.randn(b, latent), torch.arange(b) % 10)


def _forward(name: str, plan: PackagePlan | None) -> ModelForward:
    loaded = _load(name)
    spec = SPECS[name]
    forward = ModelForward(
        loaded.module, CPU, spec.is_classifier, _example(name, loaded), "aot", spec.channels_last
    )
    forward.packages = plan
    return forward


def _target(forward: ModelForward, max_batch: int) -> GraphTarget:
    forward._max_batch = max_batch
    return forward._graph_target()


@pytest.fixture(scope="session")
def package_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding each model's package for its shipped weights, compiled once (and kept
    between runs: the workers of one run, or runs one after another, compile each once)."""
    require_binary("g++", "g++")  # AOTInductor builds the C++ it writes
    directory = package_cache_dir(pytestconfig, tmp_path_factory)
    plan = PackagePlan(PackageCache(directory), GraphBuilder(), "")
    for name in MODELS:
        forward = _forward(name, None)
        forward.rebuild()  # eager, in the serving layout (channels_last)
        plan = PackagePlan(plan.cache, plan.builder, name)
        assert obtain_graph(plan, _target(forward, SPECS[name].max_batch_size)) is not None
    return directory


def _plan(directory: Path, name: str, **options: bool) -> PackagePlan:
    return PackagePlan(PackageCache(directory), GraphBuilder(), name, **options)


def _prepared(name: str, plan: PackagePlan) -> ModelForward:
    forward = _forward(name, plan)
    forward.prepare(SPECS[name].max_batch_size)
    return forward


@pytest.mark.integration
@pytest.mark.parametrize("name", MODELS)
def test_a_package_matches_eager_at_every_batch_size(package_dir: Path, name: str) -> None:
    forward = _prepared(name, _plan(package_dir, name, wait=True))
    graph = forward.graph.forward
    assert forward.graph.mode == "aot" and isinstance(graph, CompiledGraph)
    for batch in (1, 3, SPECS[name].max_batch_size):
        inputs = forward.example(batch)
        assert graph.fits(inputs)
        difference = max_difference(graph, forward.module, inputs, SPECS[name].is_classifier)
        assert difference <= MAX_PROBABILITY_DIFF


@pytest.mark.integration
def test_inputs_the_package_was_not_built_for_run_eager(package_dir: Path) -> None:
    forward = _prepared("lstm", _plan(package_dir, "lstm", wait=True))
    graph = forward.graph.forward
    assert isinstance(graph, CompiledGraph)
    short, wide = torch.randn(3, 10, 28), torch.randn(SPECS["lstm"].max_batch_size + 1, 28, 28)
    for inputs in ((short,), (wide,)):
        assert not graph.fits(inputs)
        with torch.inference_mode():
            assert torch.equal(graph(*inputs), forward.module(*inputs))
        assert forward.run(inputs).shape == (inputs[0].shape[0], 10)


@pytest.mark.integration
def test_new_weights_miss_the_cache_and_are_compiled_once(
    package_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = next(package_dir.glob("cnn-*.pt2"))
    compiled: list[Path] = []

    def fake_compile(module, example, max_batch, path, threads):  # type: ignore[no-untyped-def]
        compiled.append(path)
        shutil.copyfile(source, path)  # the cnn reads every weight from the module
        return 0.0

    monkeypatch.setattr(aot_builds, "compile_package_isolated", fake_compile)
    shutil.copyfile(source, tmp_path / source.name)
    forward = _forward("cnn", None)
    forward.rebuild()
    target = _target(forward, SPECS["cnn"].max_batch_size)
    plan = _plan(tmp_path, "cnn")
    assert obtain_graph(plan, target) is not None and compiled == []  # the shipped weights: a hit
    reinitialize(forward.module, InitPlan(seed=1))
    assert obtain_graph(_plan(tmp_path, "cnn", compile_missing=False), target) is None
    assert obtain_graph(plan, target) is not None and len(compiled) == 1
    assert obtain_graph(plan, target) is not None and len(compiled) == 1  # now cached
    assert len(list(tmp_path.glob("cnn-*.pt2"))) == 2


@pytest.mark.integration
def test_a_corrupt_package_is_ignored_and_eager_serves(
    package_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = next(package_dir.glob("cnn-*.pt2"))
    (tmp_path / source.name).write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    caplog.set_level(logging.WARNING)
    forward = _prepared("cnn", _plan(tmp_path, "cnn", compile_missing=False, wait=True))
    assert forward.graph.mode == "eager"
    assert "ignoring the compiled graph" in caplog.text
    assert forward.run(forward.example(2)).shape == (2, 10)


def test_without_a_compiler_a_cache_miss_serves_eager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(aot_builds, "compiler_found", lambda: False)
    caplog.set_level(logging.WARNING)
    forward = _prepared("cnn", _plan(tmp_path, "cnn", wait=True))
    assert forward.graph.mode == "eager" and "no C++ compiler" in caplog.text
    assert list(tmp_path.glob("*.pt2")) == []


def test_a_failed_write_leaves_no_package(tmp_path: Path) -> None:
    def half_written(path: Path) -> None:
        path.write_bytes(b"PK half")
        raise OSError("disk full")

    cache = PackageCache(tmp_path)
    forward = _forward("cnn", None)
    key = _target(forward, 16).key("cnn")
    with pytest.raises(OSError):
        cache.store(key, half_written)
    assert list(tmp_path.iterdir()) == [] and cache.find(key) is None


def test_temporary_files_of_killed_compiles_are_removed_later(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".cnn-old.tmp.pt2", tmp_path / ".cnn-new.tmp.pt2"
    for path in (stale, fresh):
        path.write_bytes(b"PK")
    os.utime(stale, (time.time() - 2 * STALE_TMP_S,) * 2)
    key = _target(_forward("cnn", None), 16).key("cnn")
    stored = PackageCache(tmp_path).store(key, lambda path: path.write_bytes(b"PK package"))
    assert not stale.exists() and fresh.exists()  # a live compile's file is left alone
    assert stored.read_bytes() == b"PK package" and stored.stat().st_mode & 0o777 == 0o644


@pytest.mark.integration
def test_the_graph_is_swapped_in_while_requests_flow(package_dir: Path) -> None:
    forward = _prepared("gan", _plan(package_dir, "gan"))
    reference = forward.module
    failures: list[BaseException] = []
    modes: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "aot" not in modes:
        try:  # the worker's loop: one batch after another, the swap happens between them
            inputs = forward.example(5)
            got = forward.run(inputs)
            with torch.inference_mode():
                assert (got - reference(*inputs)).abs().max() <= MAX_PROBABILITY_DIFF
        except BaseException as exc:
            failures.append(exc)
        modes.add(forward.graph.mode)
    assert failures == [] and modes == {"eager", "aot"}


@pytest.mark.integration
def test_an_idle_model_gets_its_graph_through_the_worker(package_dir: Path) -> None:
    with ThreadPoolExecutor(1) as worker:  # stands in for the registry's forward worker
        plan = PackagePlan(
            PackageCache(package_dir), GraphBuilder(), "lstm", on_worker=worker.submit
        )
        forward = _prepared("lstm", plan)
        deadline = time.monotonic() + 60
        while forward.graph.mode != "aot" and time.monotonic() < deadline:
            time.sleep(0.05)  # no batch runs: the swap is the worker's own task
    assert forward.graph.mode == "aot"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["cnn", "gan"])
def test_a_reinitialize_after_the_swap_answers_with_the_new_weights(
    package_dir: Path, name: str
) -> None:
    forward = _prepared(name, _plan(package_dir, name, wait=True, compile_missing=False))
    assert forward.graph.mode == "aot"
    inputs = forward.example(3)
    before = forward.run(inputs)
    reinitialize(forward.module, InitPlan(scheme="normal", std=0.05, seed=7))
    forward.rebuild()  # what every parameter swap does on the worker
    after = forward.run(inputs)
    with torch.inference_mode():
        expected = forward.module(*inputs)
        if SPECS[name].is_classifier:
            expected = expected.softmax(1)
    assert (after - expected).abs().max() <= MAX_PROBABILITY_DIFF
    assert (after - before).abs().max() > 1e-3
    # the cnn reads its weights from the module and keeps its graph; the GAN has weights baked
    # in, so it serves eager until a package for the new weights exists
    assert forward.graph.mode == ("aot" if name == "cnn" else "eager")


@pytest.mark.integration
@pytest.mark.anyio
async def test_readiness_waits_for_graphs_only_when_asked(
    package_dir: Path, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    release = threading.Event()
    blocked = GraphBuilder()
    blocked.submit(release.wait)  # a compile that has not finished
    settings = settings_factory(
        models=("cnn",), graph="aot", compiled_dir=tmp_path, compile_graphs=True
    )
    registry = ModelRegistry(settings, CPU, Metrics(CPU))
    registry._graph_builder = blocked
    entry = await registry.load("cnn")
    assert entry.runtime is not None and entry.runtime.forward.graph.mode == "eager"
    release.set()
    await registry.close()

    waiting = settings_factory(
        models=("cnn",), graph="aot", compiled_dir=package_dir, wait_for_graphs=True
    )
    registry = ModelRegistry(waiting, CPU, Metrics(CPU))
    entry = await registry.load("cnn")
    assert entry.runtime is not None and entry.runtime.forward.graph.mode == "aot"
    assert entry.runtime.describe()["graph"] == "aot"
    await registry.close()
