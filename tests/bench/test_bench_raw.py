"""The raw measurement runs where the server would."""

from __future__ import annotations

from pathlib import Path

from app.bench.images import garment_png
from app.bench.raw import measure

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
