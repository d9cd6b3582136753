from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import ALL_MODELS, Settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("TORCHGATE_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.grpc_port == 8001  # Triton's; tests/conftest.py turns it off in-process
    assert settings.models == ALL_MODELS
    assert settings.device == "auto"
    assert settings.checkpoint_dir == Path("models")
    assert settings.data_dir == Path("data")
    assert settings.weights_dir.name == "checkpoints"
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.max_image_pixels == 40_000_000
    assert settings.download_weights and settings.verify_weights and not settings.half


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHGATE_MODELS", "cnn, alexnet")
    monkeypatch.setenv("TORCHGATE_PORT", "9001")
    monkeypatch.setenv("TORCHGATE_MAX_BATCH_SIZE", "cnn=128,alexnet=4")
    monkeypatch.setenv("TORCHGATE_MAX_BATCH_DELAY_MS", "3.5")
    monkeypatch.setenv("TORCHGATE_ADMIN_TOKEN", "s3cret")
    settings = Settings()
    assert settings.models == ("cnn", "alexnet")
    assert settings.port == 9001
    assert settings.batch_size_for("cnn", 64) == 128
    assert settings.batch_size_for("vgg16", 8) == 8
    assert settings.batch_delay_for("cnn", 2.0) == 3.5
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"


def test_unknown_model_names_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match="resnet101"):
        Settings(models=("alexnet", "bert"))


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_device_syntax_is_checked(device: str) -> None:
    with pytest.raises(ValidationError, match="device"):
        Settings(device=device)


def test_thread_budget_is_shared_between_workers() -> None:
    assert Settings(workers=1).torch_threads_per_worker(cores=2) == 2
    assert Settings(workers=1).torch_threads_per_worker(cores=16) == 16
    assert Settings(workers=2).torch_threads_per_worker(cores=16) == 8
    assert Settings(workers=2).torch_threads_per_worker(cores=2) == 1
    assert Settings(workers=4).torch_threads_per_worker(cores=2) == 1
    assert Settings(torch_threads=3).torch_threads_per_worker(cores=2) == 3
    assert Settings(workers=1).decode_threads_per_worker(cores=16) == 4
    assert Settings(workers=2).decode_threads_per_worker(cores=2) == 1


def test_on_cuda_the_cores_go_to_decoding_and_torch_gets_one_thread() -> None:
    """16 cores, one worker: 14 decode threads + the event loop + the forward worker, and
    one intra-op thread each (not an OpenMP team of 16 per decode thread)."""
    assert Settings(workers=1).torch_threads_per_worker(cores=16, cuda=True) == 1
    assert Settings(workers=1).decode_threads_per_worker(cores=16, cuda=True) == 14
    assert Settings(workers=2).decode_threads_per_worker(cores=16, cuda=True) == 6
    assert Settings(workers=1).decode_threads_per_worker(cores=2, cuda=True) == 1
    assert Settings(torch_threads=4).torch_threads_per_worker(cores=16, cuda=True) == 4
    assert Settings(decode_threads=3).decode_threads_per_worker(cores=16, cuda=True) == 3


def test_grpc_limits_become_grpcio_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api.grpc.options import server_options

    monkeypatch.setenv("TORCHGATE_GRPC_MAX_CONCURRENT_STREAMS", "64")
    monkeypatch.setenv("TORCHGATE_GRPC_MIN_PING_INTERVAL_S", "2.5")
    monkeypatch.setenv("TORCHGATE_GRPC_MAX_CONNECTION_AGE_S", "0")
    options = dict(server_options(Settings()))
    assert options["grpc.max_concurrent_streams"] == 64
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 2500
    assert options["grpc.max_receive_message_length"] == 20 * 1024 * 1024
    assert "grpc.max_connection_age_ms" not in options  # 0: connections may live forever
    assert options["grpc.max_connection_idle_ms"] == 300_000
