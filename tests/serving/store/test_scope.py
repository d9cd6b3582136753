"""The store of one ``serve`` run: a file its workers share, removed when the run ends."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.serving.store.scope import ENV, run_scoped_store
from app.serving.store.sqlite_store import SqliteStore


def test_an_unset_url_gives_the_run_a_file_under_the_data_dir_and_removes_it(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with run_scoped_store(settings_factory(data_dir=tmp_path)) as url:
        assert os.environ[ENV] == url  # the workers' Settings read it
        assert url.startswith(f"sqlite:///{tmp_path.resolve()}/state/serve-")
        store = SqliteStore(url, 5, 10)
        store.append_record("cnn", "reload", {}, "p:1", floor=1)
        store.close()
        assert list((tmp_path / "state").iterdir())
    assert ENV not in os.environ
    assert list((tmp_path / "state").iterdir()) == []
    with run_scoped_store(settings_factory(data_dir=tmp_path)) as second:
        assert second != url  # two runs never share parameters by accident


def test_an_explicit_url_is_left_alone(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with run_scoped_store(settings_factory(state_url="redis://store:6379/0")) as url:
        assert url == "redis://store:6379/0"
        assert ENV not in os.environ


def test_a_read_only_data_dir_falls_back_to_the_temp_dir(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    (tmp_path / "state").write_text("not a folder")  # mkdir fails as on a read-only volume
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    with run_scoped_store(settings_factory(data_dir=tmp_path)) as url:
        assert url.startswith(f"sqlite:///{tmp_path}/tmp/torchgate-state/serve-")
