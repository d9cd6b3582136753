import torch
from torch import nn

from app.serving.checksum import parameters_sha256
from app.serving.forward import ModelForward, warmup_batch_sizes
from app.serving.reinit import InitPlan, reinitialize


def test_warmup_sizes_cover_every_served_shape_on_cuda_only() -> None:
    assert warmup_batch_sizes(torch.device("cpu"), 64) == [1]
    assert warmup_batch_sizes(torch.device("cuda"), 24) == [1, 2, 4, 8, 16, 24]


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        return self.linear(x)


def test_prepare_warms_up_before_serving() -> None:
    module = _Recorder().eval()
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    forward.prepare(max_batch_size=16)
    assert module.seen == [1]


def test_run_returns_cpu_probabilities() -> None:
    module = nn.Linear(4, 3).eval()
    forward = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    forward.prepare(2)
    out = forward.run([torch.randn(5, 4)])
    assert out.device.type == "cpu" and out.shape == (5, 3)
    assert torch.allclose(out.sum(1), torch.ones(5))
    raw = forward.run([torch.zeros(1, 4)], postprocess=False)
    assert torch.allclose(raw, module.bias.unsqueeze(0))


def test_frozen_graph_is_rebuilt_after_a_parameter_swap() -> None:
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    forward = ModelForward(
        module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),), graph_mode="script"
    )
    forward.prepare(4)
    assert forward.graph.mode == "script"
    x = torch.randn(3, 4)
    before = forward.run([x])
    checksum = parameters_sha256(module)
    reinitialize(module, InitPlan(seed=5))
    assert parameters_sha256(module) != checksum
    forward.rebuild()
    after = forward.run([x])
    with torch.inference_mode():
        expected = module(x).softmax(1)
    assert torch.allclose(after, expected, atol=1e-6)
    assert not torch.allclose(before, after)


def test_half_precision_is_a_cuda_only_path() -> None:
    """On the CPU fallback TORCHGATE_HALF changes nothing: fp32 in, fp32 out, same numbers."""
    torch.manual_seed(0)
    module = nn.Linear(4, 3).eval()
    x = torch.randn(2, 4)
    plain = ModelForward(module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),))
    half = ModelForward(
        module,
        torch.device("cpu"),
        True,
        lambda b: (torch.randn(b, 4),),
        half=True,
        half_dtype=torch.bfloat16,
    )
    for forward in (plain, half):
        forward.prepare(2)
    out = half.run([x])
    assert out.dtype == torch.float32
    assert torch.equal(out, plain.run([x]))


def test_channels_last_inputs_on_the_cpu_fallback() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2)).eval()
    module(torch.randn(1, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        expected = module(x).softmax(1)
    forward = ModelForward(
        module,
        torch.device("cpu"),
        True,
        lambda b: (torch.randn(b, 3, 8, 8),),
        channels_last=True,
    )
    forward.prepare(2)
    assert forward.graph.channels_last
    assert torch.allclose(forward.run([x]), expected, atol=1e-6)


def test_a_models_thread_cap_applies_to_its_batches() -> None:
    import threading

    module = nn.Linear(4, 3).eval()
    forward = ModelForward(
        module, torch.device("cpu"), True, lambda b: (torch.randn(b, 4),), cpu_threads=1
    )
    seen: list[int] = []
    original = torch.get_num_threads()

    def worker() -> None:
        torch.set_num_threads(2)
        forward.run([torch.randn(3, 4)])
        seen.append(torch.get_num_threads())

    try:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(original)
    assert seen == [1]
