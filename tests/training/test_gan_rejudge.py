"""Re-scoring the committed GAN with a retrained cnn."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.evaluation import evaluate_gan_consistency
from app.training.artifacts import load_net
from app.training.gan_rejudge import rejudge_gan

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    for name in ("cnn.json", "cnn.pt", "gan.json", "gan.pt"):
        shutil.copy(MODELS / name, tmp_path / name)
    return tmp_path


def test_rejudging_records_the_new_judge_and_keeps_the_old_one(out: Path) -> None:
    manifest = json.loads((out / "gan.json").read_text())
    manifest["judge"] = {"manifest": "cnn.json", "sha256": "0" * 64}  # as if the cnn changed
    manifest.pop("selection_judge", None)
    (out / "gan.json").write_text(json.dumps(manifest))

    rejudged = rejudge_gan(out)

    cnn_sha = json.loads((out / "cnn.json").read_text())["sha256"]
    assert rejudged["judge"] == {"manifest": "cnn.json", "sha256": cnn_sha}
    assert rejudged["selection_judge"]["sha256"] == "0" * 64
    assert rejudged == json.loads((out / "gan.json").read_text())
    generator, _ = load_net(out / "gan.json")
    cnn, _ = load_net(out / "cnn.json")
    expected = evaluate_gan_consistency(generator, cnn, per_class=100, seed=0)
    assert rejudged["consistency"] == expected["consistency"]
    assert rejudged["per_class_consistency"] == expected["per_class"]


def test_the_committed_gan_is_judged_by_the_committed_cnn() -> None:
    gan = json.loads((MODELS / "gan.json").read_text())
    cnn = json.loads((MODELS / "cnn.json").read_text())
    assert gan["judge"]["sha256"] == cnn["sha256"]
