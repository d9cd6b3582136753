import torch
from torch import nn

from app.serving.checksum import parameter_count, parameters_sha256


def test_checksum_is_stable_and_sees_every_change() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    first = parameters_sha256(module)
    assert first == parameters_sha256(module)
    with torch.no_grad():
        module[0].weight[0, 0] += 1e-6
    assert parameters_sha256(module) != first


def test_checksum_covers_buffers() -> None:
    module = nn.BatchNorm1d(3)
    before = parameters_sha256(module)
    module.running_mean += 1
    assert parameters_sha256(module) != before


def test_parameter_count() -> None:
    assert parameter_count(nn.Linear(4, 3)) == 15
