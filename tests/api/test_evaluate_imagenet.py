"""POST /admin/models/{name}/evaluate on the ImageNet folder layouts people bring: a WordNet-id
subset (with subset metrics), a flat ILSVRC2012 validation folder, and 400s at submit time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import AlexNet_Weights

from tests.helpers.apps import admin_headers, running_app

pytestmark = pytest.mark.anyio

EVALUATE = "/admin/models/alexnet/evaluate"


def _jpeg(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40 + shade % 7, 32), (shade * 37 % 256, 90, shade * 11 % 256)).save(path)
    return path


async def _finished(client: httpx.AsyncClient, started: httpx.Response) -> dict:
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    for _ in range(300):
        job = (await client.get(f"/admin/jobs/{job_id}", headers=admin_headers())).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the evaluation did not finish in time")


def _direct(
    weights_dir: Path, samples: list[tuple[Path, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets computed without the service, for the figures to be compared."""
    model = torchvision.models.alexnet()
    model.load_state_dict(torch.load(weights_dir / "alexnet-owt-7be5be79.pth"))
    model.eval()
    transform = AlexNet_Weights.DEFAULT.transforms()
    images = torch.stack([transform(Image.open(path).convert("RGB")) for path, _ in samples])
    with torch.inference_mode():
        return model(images), torch.tensor([target for _, target in samples])


async def test_a_wordnet_id_subset_reports_subset_metrics_and_skips_corrupt_images(
    settings_factory, tmp_path, weights_dir
) -> None:
    folder = tmp_path / "data" / "imagenette-mini"
    samples = [(_jpeg(folder / "n01440764" / f"{i}.JPEG", i), 0) for i in range(3)]
    samples += [(_jpeg(folder / "n03888257" / f"{i}.JPEG", 5 + i), 701) for i in range(2)]
    (folder / "n03888257" / "broken.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "n03888257" / "empty.jpg").write_bytes(b"")
    async with running_app(settings_factory(data_dir=tmp_path / "data")) as client:
        started = await client.post(
            EVALUATE, json={"image_folder": "imagenette-mini"}, headers=admin_headers()
        )
        job = await _finished(client, started)
        accuracy = (
            await client.get("/admin/models/alexnet/accuracy", headers=admin_headers())
        ).json()
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert job["progress"] == {"done": 7, "total": 7}
    assert result["n"] == 5 and result["classes"] == 2
    assert result["layout"] == "wordnet-id folders"
    assert result["dataset"] == "ImageFolder imagenette-mini"
    assert result["skipped"] == {
        "count": 2,
        "first": ["n03888257/broken.JPEG", "n03888257/empty.jpg"],
    }
    logits, targets = _direct(weights_dir, samples)
    top1 = (logits.argmax(1) == targets).float().mean().item()
    restricted = torch.tensor([0, 701])[logits[:, [0, 701]].argmax(1)]
    assert result["top1"] == result["accuracy"] == pytest.approx(top1)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert result["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-4
    )
    assert result["subset_top1"] == pytest.approx((restricted == targets).float().mean().item())
    assert "subset_top5" not in result  # two classes
    assert "2 classes" in result["note"]
    assert [(row["index"], row["wnid"], row["label"], row["n"]) for row in result["per_class"]] == [
        (0, "n01440764", "tench", 3),
        (701, "n03888257", "parachute", 2),
    ]
    assert all(0.0 <= row["top1"] <= row["subset_top1"] <= 1.0 for row in result["per_class"])
    assert accuracy["latest"]["parameters_sha256"] == result["parameters_sha256"]
    recorded = accuracy["recorded"]
    assert recorded["top1"] == pytest.approx(0.56522) and recorded["top5"] == pytest.approx(0.79066)


async def test_a_flat_validation_folder_with_kaggles_csv_is_the_1000_class_task(
    settings_factory, tmp_path, weights_dir
) -> None:
    folder = tmp_path / "data" / "ILSVRC" / "val"
    wnids = {1: ("n01751748", 65), 2: ("n09193705", 970), 3: ("n01440764", 0)}
    samples = [
        (_jpeg(folder / f"ILSVRC2012_val_{k:08d}.JPEG", k), index)
        for k, (_, index) in wnids.items()
    ]
    (folder.parent / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        + "".join(f"ILSVRC2012_val_{k:08d},{wnid} 1 2 3 4\n" for k, (wnid, _) in wnids.items())
    )
    async with running_app(settings_factory(data_dir=tmp_path / "data")) as client:
        started = await client.post(
            EVALUATE, json={"image_folder": "ILSVRC/val"}, headers=admin_headers()
        )
        job = await _finished(client, started)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["n"] == 3 and result["layout"] == "ilsvrc2012-val"
    assert result["ground_truth"] == "LOC_val_solution.csv"
    assert result["dataset"] == "ILSVRC2012 validation images ILSVRC/val"
    assert result["skipped"] == {"count": 0, "first": []}
    assert not {"subset_top1", "per_class", "note"} & result.keys()
    logits, targets = _direct(weights_dir, samples)
    assert result["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-4
    )


async def test_folders_that_cannot_be_evaluated_answer_400_at_submit(
    settings_factory, tmp_path
) -> None:
    data = tmp_path / "data"
    _jpeg(data / "mixed" / "n01440764" / "a.jpg", 1)
    _jpeg(data / "mixed" / "12" / "a.jpg", 2)
    _jpeg(data / "unknown" / "n99999999" / "a.jpg", 3)
    _jpeg(data / "rows" / "ILSVRC2012_val_00000001.JPEG", 4)
    _jpeg(data / "rows" / "ILSVRC2012_val_00000002.JPEG", 5)
    (data / "rows" / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n"
    )
    (data / "empty").mkdir()
    refusals = {
        "mixed": "must all be named one way",
        "unknown": "outside ImageNet-1k's 1000 classes",
        "rows": "1 of the 2 images have no row in LOC_val_solution.csv",
        "empty": "holds no images",
    }
    async with running_app(settings_factory(data_dir=data)) as client:
        for folder, sentence in refusals.items():
            response = await client.post(
                EVALUATE, json={"image_folder": folder}, headers=admin_headers()
            )
            assert response.status_code == 400, folder
            assert sentence in response.json()["detail"], response.json()["detail"]
