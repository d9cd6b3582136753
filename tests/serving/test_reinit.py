import pytest
import torch
import torchvision
from torch import nn

from app.serving.checksum import parameters_sha256
from app.serving.reinit import SCHEMES, InitPlan, reinitialize


def _small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5)
    ).eval()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_gives_same_parameters(scheme: str) -> None:
    net = _small_net()
    reinitialize(net, InitPlan(scheme=scheme, seed=7))  # type: ignore[arg-type]
    first = parameters_sha256(net)
    reinitialize(net, InitPlan(scheme=scheme, seed=8))  # type: ignore[arg-type]
    assert parameters_sha256(net) != first
    used = reinitialize(net, InitPlan(scheme=scheme, seed=7))  # type: ignore[arg-type]
    assert used == 7
    assert parameters_sha256(net) == first
    assert not net.training


def test_without_seed_a_fresh_seed_is_used_and_reported() -> None:
    net = _small_net()
    seed = reinitialize(net, InitPlan())
    first = parameters_sha256(net)
    reinitialize(net, InitPlan(seed=seed))
    assert parameters_sha256(net) == first


def test_seeded_reinit_leaves_the_global_rng_alone() -> None:
    net = _small_net()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    reinitialize(net, InitPlan(seed=1))
    assert torch.equal(torch.rand(3), expected)


def test_normal_and_uniform_draw_the_requested_distribution() -> None:
    net = nn.Linear(500, 400)
    reinitialize(net, InitPlan(scheme="normal", mean=0.5, std=0.2, seed=0))
    assert net.weight.mean().item() == pytest.approx(0.5, abs=0.01)
    assert net.weight.std().item() == pytest.approx(0.2, abs=0.01)
    reinitialize(net, InitPlan(scheme="uniform", a=-2.0, b=-1.0, seed=0))
    assert net.weight.min().item() >= -2.0 and net.weight.max().item() <= -1.0


def test_default_restores_the_distribution_of_a_fresh_model() -> None:
    torch.manual_seed(0)
    fresh = torchvision.models.alexnet()
    trained_like = torchvision.models.alexnet()
    reinitialize(trained_like, InitPlan(scheme="normal", mean=3.0, std=1.0, seed=1))
    reinitialize(trained_like, InitPlan(scheme="default", seed=2))
    for (name, new), old in zip(trained_like.named_parameters(), fresh.parameters(), strict=True):
        assert new.std().item() == pytest.approx(old.std().item(), rel=0.1), name
        assert new.mean().item() == pytest.approx(old.mean().item(), abs=0.02), name


def test_xavier_and_kaiming_touch_only_weight_matrices() -> None:
    net = nn.Linear(300, 200)
    reinitialize(net, InitPlan(scheme="kaiming_normal", seed=0))
    assert net.weight.std().item() == pytest.approx((2 / 300) ** 0.5, rel=0.05)
    reinitialize(net, InitPlan(scheme="xavier_uniform", seed=0))
    bound = (6 / (300 + 200)) ** 0.5
    assert net.weight.abs().max().item() <= bound
    assert net.bias.abs().max().item() <= 1 / 300**0.5  # Linear's own bias init


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"std": 0.0}, "std"),
        ({"a": 1.0, "b": 1.0}, "a must be less"),
        ({"mean": float("nan")}, "mean"),
    ],
)
def test_invalid_plans_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InitPlan(**kwargs)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_gives_the_same_bytes_in_any_memory_layout(scheme: str) -> None:
    """A channels_last copy (as served) and a contiguous one agree byte for byte: the draws
    happen on contiguous CPU tensors and are copied into the live layout."""
    contiguous = _small_net()
    channels_last = _small_net().to(memory_format=torch.channels_last)
    assert channels_last[0].weight.is_contiguous(memory_format=torch.channels_last)
    for net in (contiguous, channels_last):
        reinitialize(net, InitPlan(scheme=scheme, seed=11))  # type: ignore[arg-type]
    assert parameters_sha256(contiguous) == parameters_sha256(channels_last)
    assert channels_last[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_reinitialize_keeps_the_tensors_the_serving_graph_holds() -> None:
    net = _small_net()
    weight = net[0].weight
    reinitialize(net, InitPlan(scheme="normal", seed=3))
    assert net[0].weight is weight
    assert weight.std().item() == pytest.approx(0.01, rel=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_gives_the_same_bytes_on_cpu_and_cuda(scheme: str) -> None:
    cpu = _small_net()
    cuda = _small_net().cuda().to(memory_format=torch.channels_last)
    for net in (cpu, cuda):
        reinitialize(net, InitPlan(scheme=scheme, seed=5))  # type: ignore[arg-type]
    assert parameters_sha256(cpu) == parameters_sha256(cuda)
    assert next(cuda.parameters()).is_cuda
