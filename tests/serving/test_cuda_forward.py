"""ModelForward on a real CUDA device against the CPU reference; skipped without a GPU.

Each model is loaded twice, as the server loads it (meta-device build, weights adopted), once
on the CPU and once on CUDA, and both run the same seeded batch of 6 rows (the CUDA side pads
it to 8, a warmed size). Compared: the raw outputs (logits, or the gan's pixels), as the
largest difference over the largest CPU output, and the top-1 class of every row.

- fp32: within 2e-2. cuDNN may run fp32 convolutions in TF32 (PyTorch's default,
  ``torch.backends.cudnn.allow_tf32``), whose 10-bit mantissa gives ~5e-4 relative error per
  layer, growing with depth (resnet101: ~100 layers);
- fp16 autocast: within 5e-2 (the same mantissa, plus activations stored in fp16);
- channels_last changes the kernels, not the precision: the bound of its precision.
Top-1 agrees on every row except where the CPU's two best logits are closer than that bound.

TORCHGATE_TEST_CUDA_STANDIN=cpu runs these tests with the CPU standing in for CUDA (the CUDA
shape rules forced on), to try the harness on a machine without a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from app.serving.forward import ModelForward
from app.serving.loading import LoadedModel, WeightsLocation, load_model
from app.zoo import SPECS
from tests.helpers.repo import REPO_ROOT
from tests.helpers.weights import write_random_weights

STANDIN = os.environ.get("TORCHGATE_TEST_CUDA_STANDIN") == "cpu"
pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or STANDIN), reason="needs a CUDA device"
)
FP32_TOLERANCE = 2e-2
HALF_TOLERANCE = 5e-2
ROWS, MAX_BATCH = 6, 8
# (model, channels_last variant applies)
MODELS = [("cnn", True), ("lstm", False), ("gan", False), ("alexnet", True), ("resnet101", True)]


@pytest.fixture(scope="module")
def target() -> torch.device:
    return torch.device("cpu" if STANDIN else "cuda")


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights with calibrated batch-norm statistics (torchgate_bench.weights), so that
    resnet101's activations keep a trained net's scale, inside fp16's range."""
    directory = tmp_path_factory.mktemp("cuda-weights")
    for name in ("alexnet", "resnet101"):
        write_random_weights(name, directory)
    return directory


def _load(name: str, device: torch.device, weights_dir: Path) -> LoadedModel:
    where = WeightsLocation(weights_dir, REPO_ROOT / "models", download=False, verify=False)
    return load_model(SPECS[name], where, device)


def _inputs(loaded: LoadedModel, rows: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    if loaded.codec is not None:
        shape = loaded.codec.example(rows)[0].shape
        return (torch.randn(shape, generator=generator),)
    return torch.randn(rows, 100, generator=generator), torch.arange(rows) % 10


def _forward(
    loaded: LoadedModel, device: torch.device, **options: object
) -> tuple[ModelForward, tuple[torch.Tensor, ...]]:
    classifier = loaded.codec is not None

    def example(rows: int) -> tuple[torch.Tensor, ...]:
        return _inputs(loaded, rows)

    forward = ModelForward(loaded.module, device, classifier, example, **options)  # type: ignore[arg-type]
    forward.prepare(MAX_BATCH)
    return forward, _inputs(loaded, ROWS)


def _compare(
    reference: torch.Tensor, got: torch.Tensor, tolerance: float, classifier: bool
) -> None:
    assert got.shape == reference.shape
    assert got.device.type == "cpu" and got.dtype == torch.float32
    assert torch.isfinite(got).all()
    scale = reference.abs().max().item()
    error = (got - reference).abs().max().item()
    assert error <= tolerance * scale, f"max difference {error:.3g} over scale {scale:.3g}"
    if classifier:
        top2 = reference.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * tolerance * scale
        assert torch.equal(got.argmax(1)[clear], reference.argmax(1)[clear])


_REFERENCES: dict[str, tuple[torch.Tensor, tuple[torch.Tensor, ...], bool]] = {}


def _reference(name: str, weights_dir: Path) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], bool]:
    """The CPU's raw outputs for the model's seeded batch, its inputs, and whether it is a
    classifier (computed once per model)."""
    if name not in _REFERENCES:
        cpu = _load(name, torch.device("cpu"), weights_dir)
        forward, inputs = _forward(cpu, torch.device("cpu"))
        _REFERENCES[name] = forward.run(inputs, postprocess=False), inputs, cpu.codec is not None
    return _REFERENCES[name]


# channels_last only where the model convolves over images (it means nothing for the lstm)
VARIANTS = [
    (name, variant)
    for name, conv in MODELS
    for variant in ("fp32", "fp16", "channels_last", "channels_last fp16")
    if conv or "channels_last" not in variant
]


@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_cuda_forward_matches_the_cpu(
    name: str, variant: str, target: torch.device, imagenet_weights: Path
) -> None:
    channels_last, half = "channels_last" in variant, "fp16" in variant
    reference, inputs, classifier = _reference(name, imagenet_weights)
    device_forward, _ = _forward(
        _load(name, target, imagenet_weights),
        target,
        channels_last=channels_last,
        half=half,
        fixed_shapes=True,
    )
    assert device_forward.batch_plan(inputs) == (MAX_BATCH, True)  # padded to a warmed size
    got = device_forward.run(inputs, postprocess=False)
    tolerance = HALF_TOLERANCE if half else FP32_TOLERANCE
    _compare(reference, got, tolerance, classifier)


def test_cuda_serves_other_image_sizes_untuned_and_leaves_autotuning_on(
    target: torch.device, imagenet_weights: Path
) -> None:
    """A tensor input of another height and width runs without padding and without cuDNN
    tuning it, and the process-wide flag is back on afterwards."""
    loaded = _load("alexnet", target, imagenet_weights)
    forward, _ = _forward(loaded, target, channels_last=True, fixed_shapes=True)
    torch.backends.cudnn.benchmark = target.type == "cuda"
    odd = torch.randn(3, 3, 160, 200)
    assert forward.batch_plan([odd]) == (3, False)
    out = forward.run([odd])
    assert out.shape == (3, 1000)
    assert torch.allclose(out.sum(1), torch.ones(3), atol=1e-4)
    assert torch.backends.cudnn.benchmark == (target.type == "cuda")
