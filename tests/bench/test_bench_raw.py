"""The raw measurement runs where the server would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.config import Settings
from torchgate_bench.images import garment_png
from torchgate_bench.raw import batch_sizes, measure

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_auto_device_measures_on_this_machine(tmp_path: Path) -> None:
    image = tmp_path / "garment.png"
    image.write_bytes(garment_png().data)
    result = measure(
        "cnn", tmp_path, MODELS, image, budget_s=1.0, threads=1, device="auto", half=True
    )
    assert result.device == "cpu"  # no GPU here; "auto" follows the server's rule
    assert result.raw_images_per_s > 0
    assert all("fp16" not in str(trial["variant"]) for trial in result.trials)


def test_raw_follows_the_servers_batch_limit_and_decode_pool(tmp_path: Path) -> None:
    image = tmp_path / "garment.png"
    image.write_bytes(garment_png().data)
    settings = Settings(max_batch_size={"cnn": 8}, decode_threads=2)
    result = measure("cnn", tmp_path, MODELS, image, budget_s=1.0, threads=1, settings=settings)
    assert {int(t["batch_size"]) for t in result.trials} <= {1, 8}
    assert result.max_batch_size == 8
    assert result.decode_threads == 2 and result.decode_images_per_s > 0
    # the CPU runs decode and forward on the same cores: their costs add up
    assert result.rule == "serial"
    expected = 1 / (1 / result.forward_images_per_s + result.decode_ms_per_image / 1000)
    assert result.raw_images_per_s == pytest.approx(expected)


def test_cuda_runs_every_batch_size_the_server_pads_to() -> None:
    assert batch_sizes(torch.device("cuda"), True, 64) == [1, 2, 4, 8, 16, 32, 64]
    assert batch_sizes(torch.device("cuda"), False, 24) == [1, 2, 4, 8, 16, 24]
    assert batch_sizes(torch.device("cpu"), True, 64) == [1, 4, 8, 16, 64]
    assert batch_sizes(torch.device("cpu"), False, 16) == [1, 8, 16]
