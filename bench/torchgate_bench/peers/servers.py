"""Start, reach and stop one peer server (TorchServe, LitServe, plain FastAPI) for the bench.

Each peer runs in its own session, so ``stop`` ends the whole process group: TorchServe's
launcher, its JVM and its Python workers; LitServe's API and inference processes; uvicorn's
workers. Every peer serves torchgate's cnn from this repository's files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from torchgate_bench.peers.archive import archive_cnn
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.configs import PeerConfig
from torchgate_bench.peers.requirements import DEFAULT_PEERS_PYTHON, PEERS
from torchgate_bench.server import HOST, free_port

HERE = Path(__file__).resolve().parent


@dataclass
class PeerServer:
    """One peer with one configuration; a context manager that starts and stops it."""

    name: str
    config: PeerConfig
    files: CnnFiles
    workdir: Path
    python: Path = DEFAULT_PEERS_PYTHON
    ready_timeout_s: float = 180.0
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def predict_url(self) -> str:
        if self.name == "torchserve":
            return f"http://{HOST}:{self.port}/predictions/{self._ts_model}"
        return f"http://{HOST}:{self.port}/predict"

    @property
    def health_url(self) -> str:
        path = "/ping" if self.name == "torchserve" else "/health"
        return f"http://{HOST}:{self.port}{path}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def _ts_model(self) -> str:
        return f"cnn_t{self.config.threads}"

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> PeerServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command, env, cwd = self._command()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stop() ends the JVM and workers too
            )
        try:
            self._wait_healthy()
            if self.name == "torchserve":
                self._register()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        config, files = self.config, self.files
        model_args = ["--model-file", str(files.model_file), "--manifest", str(files.manifest)]
        if self.name == "fastapi":
            # the plain FastAPI peer needs nothing beyond this project's own environment
            script = str(HERE / "fastapi_app.py")
            args = ["--workers", str(config.workers), "--threads", str(config.threads)]
            return [sys.executable, script, "--port", str(self.port), *model_args, *args], {}, HERE
        if self.name == "litserve":
            script = str(HERE / "litserve_app.py")
            args = [
                "--workers",
                str(config.workers),
                "--threads",
                str(config.threads),
                "--max-batch-size",
                str(config.batch_size),
                "--batch-timeout",
                str(config.batch_delay_ms / 1000 if config.batch_size > 1 else 0.0),
            ]
            return (
                [str(self.python), script, "--port", str(self.port), *model_args, *args],
                {},
                HERE,
            )
        if self.name == "torchserve":
            return self._torchserve_command()
        raise ValueError(f"unknown peer {self.name!r}; choose one of {', '.join(PEERS)}")

    def _torchserve_command(self) -> tuple[list[str], dict[str, str], Path]:
        """TorchServe's frontend on free ports, token auth and system metrics off, the model
        API on (registration with batch size and delay), no config snapshots."""
        store = self.workdir / "model_store"
        archive_cnn(self.python, store, self.files, self.config.threads, self._ts_model)
        self._management_port = free_port()
        grpc = (free_port(), free_port())
        properties = self.workdir / "config.properties"
        properties.write_text(
            f"inference_address=http://{HOST}:{self.port}\n"
            f"management_address=http://{HOST}:{self._management_port}\n"
            f"metrics_address=http://{HOST}:{free_port()}\n"
            f"grpc_inference_address={HOST}\ngrpc_management_address={HOST}\n"
            f"grpc_inference_port={grpc[0]}\ngrpc_management_port={grpc[1]}\n"
            f"model_store={store}\ndisable_token_authorization=true\nenable_model_api=true\n"
            "default_response_timeout=120\ninstall_py_dep_per_model=false\n"
            "disable_system_metrics=true\njob_queue_size=1000\n"
        )
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        bin_dir = str(self.python.parent)
        env = {
            "LOG_LOCATION": str(self.workdir / "logs"),
            "METRICS_LOCATION": str(self.workdir / "logs"),
            "TEMP": str(tmp),  # java.io.tmpdir: where the .mar is extracted
            "TMPDIR": str(tmp),  # TorchServe's pid file
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }
        command = [
            f"{bin_dir}/torchserve",
            "--start",
            "--foreground",
            "--ncs",
            "--ts-config",
            str(properties),
            "--model-store",
            str(store),
            "--disable-token-auth",
            "--enable-model-api",
        ]
        return command, env, self.workdir  # not the repository: its worker must not see app/

    def _register(self) -> None:
        config = self.config
        params: dict[str, str | int | float] = {
            "url": f"{self._ts_model}.mar",
            "model_name": self._ts_model,
            "initial_workers": config.workers,
            "synchronous": "true",
            "response_timeout": 120,
        }
        if config.batch_size > 1:
            params.update(batch_size=config.batch_size, max_batch_delay=int(config.batch_delay_ms))
        url = f"http://{HOST}:{self._management_port}/models"
        response = httpx.post(url, params=params, timeout=self.ready_timeout_s)
        if response.status_code != 200:
            raise RuntimeError(
                f"TorchServe did not register the cnn ({response.status_code}: "
                f"{response.text[:300]}); see {self.workdir / 'logs' / 'model_log.log'}"
            )

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self._process.returncode} during start; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.health_url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} was not healthy after {self.ready_timeout_s:.0f} s")

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the peer's whole process group, SIGKILL to what is left after grace_s."""
        stop_group(self._process, grace_s)


def stop_group(process: subprocess.Popen[bytes] | None, grace_s: float = 20.0) -> None:
    """SIGTERM to the group ``process`` leads (started with ``start_new_session``), SIGKILL
    to what is left of it after ``grace_s``: a peer's launcher, server and workers alike."""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(process.pid):
        process.poll()  # reap the leader so that it does not count as alive
        time.sleep(0.2)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still there (a zombie leader counts as gone)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
