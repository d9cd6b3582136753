"""Start, reach and stop one Open Inference Protocol peer (Triton via PyTriton, or KServe).

Each runs from its own venv's python, on free loopback ports, in its own session, so that
stopping it ends the whole process group: PyTriton's Python process, tritonserver and its
Python-backend stubs; KServe's parent (gRPC) and its uvicorn workers. Both serve the cnn from
this repository's files and, when given the weights file torchgate loads, resnet101.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from prometheus_client.parser import text_string_to_metric_families

from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.requirements import DEFAULT_V2_PYTHON
from torchgate_bench.peers.servers import stop_group
from torchgate_bench.server import HOST, free_port

HERE = Path(__file__).resolve().parent
MAX_BATCH = 32  # Triton's dynamic batcher: at most this many rows per forward


@dataclass(frozen=True)
class V2Config:
    """One configuration of a v2 peer: Triton's model instances and batcher delay, or KServe's
    uvicorn workers (``delay_us`` None: no batcher); threads = cores // instances."""

    instances: int = 1
    threads: int = 2
    delay_us: int | None = None

    @property
    def label(self) -> str:
        if self.delay_us is None:
            return f"{self.instances} worker(s) x {self.threads} thread(s), no batcher"
        return (
            f"{self.instances} instance(s) x {self.threads} thread(s), dynamic batcher "
            f"max {MAX_BATCH}, delay {self.delay_us / 1000:g} ms"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "instances": self.instances,
            "threads": self.threads,
            "delay_us": self.delay_us,
            "label": self.label,
        }


def peer_grid(peer: str, cores: int, delays_us: tuple[int, ...] = (500, 2000)) -> list[V2Config]:
    """What the pre-pass tries: instances (Triton) or workers (KServe) 1 and 2, with threads
    = cores // count, and one instance on one thread too; for Triton, each batcher delay.

    The one-thread entry is there because a second intra-op thread can cost far more than it
    gives a small model on a busy machine: KServe runs ``predict`` on its event loop, and
    there two spinning OpenMP threads on two shared cores cut the cnn to a few requests per
    second (160 req/s at c=8 with one thread, 8 with two, measured here under load 8).
    """
    shapes = [(1, max(1, cores)), (2, max(1, cores // 2))]
    if cores > 1:
        shapes.insert(1, (1, 1))
    if peer == "triton":
        return [V2Config(count, threads, delay) for count, threads in shapes for delay in delays_us]
    return [V2Config(count, threads) for count, threads in shapes]


@dataclass
class V2PeerServer:
    """One peer with one configuration; a context manager that starts and stops it."""

    name: str
    config: V2Config
    files: CnnFiles
    workdir: Path
    resnet_weights: Path | None = None
    python: Path | None = None  # default: DEFAULT_V2_PYTHON[name]
    ready_timeout_s: float = 180.0
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)  # Triton's
    _process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def models(self) -> tuple[str, ...]:
        return ("cnn", "resnet101") if self.resnet_weights is not None else ("cnn",)

    def infer_url(self, model: str) -> str:
        return f"{self.base_url}/v2/models/{model}/infer"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _command(self) -> list[str]:
        python = self.python or DEFAULT_V2_PYTHON[self.name]
        files, config = self.files, self.config
        command = [
            str(python),
            str(HERE / f"{self.name}_app.py"),
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--model-file={files.model_file}",
            f"--manifest={files.manifest}",
            f"--threads={config.threads}",
        ]
        if self.resnet_weights is not None:
            command.append(f"--resnet-weights={self.resnet_weights.resolve()}")
        if self.name == "triton":
            command += [
                f"--metrics-port={self.metrics_port}",
                f"--instances={config.instances}",
                f"--max-batch={MAX_BATCH}",
                f"--delay-us={config.delay_us or 0}",
                f"--workspace={self.workdir / 'pytriton'}",
            ]
        else:
            command.append(f"--workers={config.instances}")
        return command

    def __enter__(self) -> V2PeerServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # PyTriton creates its workspace and refuses one left by an earlier start (--log-dir)
        shutil.rmtree(self.workdir / "pytriton", ignore_errors=True)
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                # TMPDIR: what PyTriton and KServe write for themselves lands in the workdir
                env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)},
                cwd=self.workdir,  # not the repository: the peer must not import its app/
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stop() ends every process below it
            )
        try:
            self._wait_ready()
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

    def _ready(self) -> bool:
        """Every model ready, on a fresh connection each (several workers: any may answer)."""
        try:
            for model in self.models:
                url = f"{self.base_url}/v2/models/{model}/ready"
                response = httpx.get(url, timeout=2, headers={"Connection": "close"})
                if response.status_code != 200:
                    return False
        except httpx.TransportError:
            return False
        return True

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self._process.returncode} during start; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.25)
        raise TimeoutError(
            f"{self.name} was not ready after {self.ready_timeout_s:.0f} s; its log "
            f"({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def server_version(self) -> str | None:
        """The version its own server metadata (``GET /v2``) reports: tritonserver's, KServe's."""
        try:
            return str(httpx.get(f"{self.base_url}/v2", timeout=10).json()["version"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def failed_calls(self) -> int | None:
        """Inferences the server itself counted as failed so far (Triton's metrics), so that a
        gRPC failure (an HTTP 200 to h2load) is not counted as served; None where the server
        keeps no such count (KServe). CANCELED is h2load's doing, not a failure: it resets the
        calls in flight when its time is up, as ``protocols.failed_calls`` says."""
        if self.name != "triton":
            return None
        text = httpx.get(f"http://{HOST}:{self.metrics_port}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            if family.name == "nv_inference_request_failure":
                samples = family.samples
                total += sum(s.value for s in samples if s.labels.get("reason") != "CANCELED")
        return int(total)

    def stop(self, grace_s: float = 8.0) -> None:
        """SIGTERM to the peer's whole process group, SIGKILL to what is left after grace_s
        (PyTriton with two threads or instances sometimes never exits on SIGTERM, nor on the
        SIGINT it asks for: a longer wait would only stretch the pre-pass)."""
        stop_group(self._process, grace_s)
        if self.name == "triton":
            remove_model_folders(self.workdir / "pytriton")


def remove_model_folders(workspace: Path, root: Path = Path("/tmp")) -> None:
    """tritonserver copies each model it loads into ``/tmp/folderXXXXXX`` (whatever TMPDIR
    says) and removes it on a clean exit only: remove those of this workspace, which their
    ``config.pbtxt`` names, and no one else's."""
    for folder in root.glob("folder*"):
        try:
            config = (folder / "config.pbtxt").read_text(errors="replace")
        except OSError:
            continue
        if f'"{workspace}"' in config:
            shutil.rmtree(folder, ignore_errors=True)
