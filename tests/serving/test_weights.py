import hashlib
import json
import pickle
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torchvision.models import AlexNet_Weights

from app.errors import WeightsUnavailable
from app.serving import weights as weights_module
from app.serving.weights import (
    ensure_pretrained_file,
    expected_hash_prefix,
    load_state_dict_file,
    pretrained_filename,
    read_manifest,
    verified_checkpoint,
)

ALEXNET = AlexNet_Weights.IMAGENET1K_V1


def _tensor_file(path: Path) -> Path:
    torch.save({"w": torch.ones(2)}, path)
    return path


def test_file_name_and_hash_prefix_come_from_the_official_url() -> None:
    assert ALEXNET.url.startswith("https://download.pytorch.org/models/")
    assert pretrained_filename(ALEXNET) == "alexnet-owt-7be5be79.pth"
    assert expected_hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"


def test_missing_file_offline_names_the_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable) as error:
        ensure_pretrained_file(ALEXNET, tmp_path, download=False, verify=True)
    assert "alexnet-owt-7be5be79.pth" in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_failed_download_makes_weights_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, dst: str, hash_prefix: str | None, progress: bool) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(weights_module.torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailable, match="downloading it failed"):
        ensure_pretrained_file(ALEXNET, tmp_path, download=True, verify=True)


def test_download_goes_to_the_weights_dir_with_hash_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_download(url: str, dst: str, hash_prefix: str | None, progress: bool) -> None:
        calls.append((url, hash_prefix, progress))
        _tensor_file(Path(dst))

    monkeypatch.setattr(weights_module.torch.hub, "download_url_to_file", fake_download)
    path = ensure_pretrained_file(ALEXNET, tmp_path / "new", download=True, verify=True)
    assert path == tmp_path / "new" / "alexnet-owt-7be5be79.pth"
    assert calls == [(ALEXNET.url, "7be5be79", True)]


def test_hash_prefix_mismatch_is_refused_unless_verification_is_off(tmp_path: Path) -> None:
    _tensor_file(tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(WeightsUnavailable, match="integrity check"):
        ensure_pretrained_file(ALEXNET, tmp_path, download=False, verify=True)
    assert ensure_pretrained_file(ALEXNET, tmp_path, download=False, verify=False).is_file()


def test_matching_hash_prefix_passes(tmp_path: Path) -> None:
    staging = _tensor_file(tmp_path / "staging.pth")
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    named = staging.rename(tmp_path / f"model-{prefix}.pth")
    weights_module.verify_hash_prefix(named)


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_state_dicts_are_read_without_running_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        pickle.dump({"w": _Evil()}, handle)
    with pytest.raises(WeightsUnavailable, match="cannot be read"):
        load_state_dict_file(path)


def test_non_tensor_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"w": "text"}, path)
    with pytest.raises(WeightsUnavailable, match="state dict of tensors"):
        load_state_dict_file(path)


def test_checkpoint_sha256_must_match_the_manifest(tmp_path: Path) -> None:
    checkpoint = _tensor_file(tmp_path / "net.pt")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    (tmp_path / "net.json").write_text(json.dumps({"checkpoint": "net.pt", "sha256": digest}))
    manifest = read_manifest(tmp_path, "net")
    assert verified_checkpoint(tmp_path, manifest) == checkpoint
    checkpoint.write_bytes(checkpoint.read_bytes() + b"tampered")
    with pytest.raises(WeightsUnavailable, match="corrupt or was replaced"):
        verified_checkpoint(tmp_path, manifest)
    checkpoint.unlink()
    with pytest.raises(WeightsUnavailable, match="missing"):
        verified_checkpoint(tmp_path, manifest)


def test_missing_or_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match="python -m app train net"):
        read_manifest(tmp_path, "net")
    (tmp_path / "net.json").write_text("{not json")
    with pytest.raises(WeightsUnavailable, match="cannot be read"):
        read_manifest(tmp_path, "net")
