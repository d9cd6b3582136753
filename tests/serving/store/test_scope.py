"""The store of one ``serve`` run: a file its workers share, removed when the run ends, in a
folder of this user's alone."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import ConfigurationError
from app.serving.store.scope import ENV, run_scoped_store
from app.serving.store.sqlite_store import SqliteStore
from tests.helpers.apps import ADMIN_TOKEN
from tests.helpers.servers import serve_refusal


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
        folder = tmp_path / "tmp" / f"torchgate-state-{os.geteuid()}"  # this user's own
        assert url.startswith(f"sqlite:///{folder}/serve-")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_state_folder_is_this_users_alone(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with run_scoped_store(settings_factory(data_dir=tmp_path)):
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    (tmp_path / "state").chmod(0o755)  # as an older torchgate left it: others could only read
    with run_scoped_store(settings_factory(data_dir=tmp_path)):
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    (tmp_path / "state").chmod(0o775)  # others could have written it: refused
    with pytest.raises(ConfigurationError, match=r"state is open to other users \(mode 775\)"):
        run_scoped_store(settings_factory(data_dir=tmp_path)).__enter__()


@pytest.mark.parametrize("problem", ["open to other users", "another user", "not a folder"])
def test_a_temp_folder_someone_else_may_have_made_is_refused(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
) -> None:
    """/tmp is everyone's: another user may have made torchgate-state-<uid> first, to read
    the store or to plant one."""
    monkeypatch.delenv(ENV, raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "state").write_text("not a folder")  # the data dir is no option
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    if problem == "another user":  # this uid's folder, seen from uid 4321
        monkeypatch.setattr(os, "geteuid", lambda: 4321)
    folder = tmp_path / f"torchgate-state-{os.geteuid()}"
    if problem == "not a folder":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.mkdir(mode=0o700)
        folder.chmod(0o755 if problem == "open to other users" else 0o700)
    with pytest.raises(ConfigurationError, match=f"{folder} .*{problem}.*TORCHGATE_STATE_URL"):
        run_scoped_store(settings_factory(data_dir=tmp_path / "data")).__enter__()


def test_serve_refuses_a_state_folder_open_to_others(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state").chmod(0o777)
    env = {**os.environ, "TORCHGATE_DATA_DIR": str(tmp_path), "TORCHGATE_MODELS": "cnn"}
    env.pop(ENV, None)
    env["TORCHGATE_ADMIN_TOKEN"] = ADMIN_TOKEN
    done = serve_refusal(env)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: the control store's folder {tmp_path / 'state'} is open to other users"
        )
    )
