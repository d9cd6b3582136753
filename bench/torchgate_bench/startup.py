"""Cold start and resident memory with all six models, against what torch alone needs.

Two ratios, measured in one run: seconds from spawning the server to /readyz over seconds to
``torch.load`` the same six state dicts (in a fresh process); and the server's resident memory
after loading and serving over (parameter bytes + the RSS of a process that imported torch,
torchvision and the app). It also says where the cold start goes: importing torch and
torchvision, importing the app on top, and each model's load (weights, graph, warm-up).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from app.config import ALL_MODELS
from app.serving.weights import pretrained_filename
from app.zoo import SPECS
from torchgate_bench.drivers import choose_driver
from torchgate_bench.images import garment_png, photo_jpeg
from torchgate_bench.load import LoadPlan, LoadTarget
from torchgate_bench.payload import raw_body, write_body
from torchgate_bench.server import ServerProcess
from torchgate_bench.weights import write_random_weights

_PROBE = r"""
import json, resource, sys, time
import torch, torchvision, app.main  # what every server process imports
from pathlib import Path
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
baseline = rss()
paths = sys.argv[1:]
started = time.perf_counter()
states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
seconds = time.perf_counter() - started
nbytes = sum(t.numel() * t.element_size() for s in states for t in s.values())
print(json.dumps({"baseline_rss": baseline, "torch_load_s": seconds, "parameter_bytes": nbytes}))
"""


@dataclass(frozen=True)
class StartupResult:
    cold_start_s: float
    torch_load_s: float
    fresh_process_load_s: float
    rss_bytes: int
    baseline_rss_bytes: int
    parameter_bytes: int
    requests: int
    errors: int
    # each model's status after loading, and what its first request answered
    models: dict[str, dict[str, object]] = field(default_factory=dict)
    # spawn-to-exit of a process that imports torch + torchvision, and one importing the app
    torch_import_s: float = 0.0
    app_import_s: float = 0.0

    def breakdown(self) -> str:
        """Where the cold start goes: imports, then each model's load (seconds, graph)."""
        lines = [
            f"  import torch + torchvision  {self.torch_import_s:6.2f} s (fresh process)",
            f"  import the app on top       {self.app_import_s - self.torch_import_s:6.2f} s",
        ]
        for name, model in self.models.items():
            seconds = model.get("load_seconds")
            shown = f"{seconds:6.2f} s" if isinstance(seconds, float) else "     -  "
            graphs = f"graph {model.get('graph', '-')}, after the load {model.get('graph_at_end')}"
            lines.append(f"  load {name:<22} {shown} ({graphs})")
        lines.append(
            "  (models load two at a time; the rest of the cold start is the server's own start)"
        )
        return "\n".join(lines)

    @property
    def cold_start_ratio(self) -> float:
        return self.cold_start_s / self.torch_load_s

    @property
    def fresh_process_ratio(self) -> float:
        return self.cold_start_s / self.fresh_process_load_s

    @property
    def memory_ratio(self) -> float:
        return self.rss_bytes / (self.parameter_bytes + self.baseline_rss_bytes)

    def to_dict(self) -> dict[str, float | int]:
        return {
            **asdict(self),
            "cold_start_ratio": self.cold_start_ratio,
            "fresh_process_ratio": self.fresh_process_ratio,
            "memory_ratio": self.memory_ratio,
        }


def _state_files(weights_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """The six models' weights files (those that exist: a missing one is that model's
    problem, reported with its status, not the measurement's)."""
    files = []
    for name in ALL_MODELS:
        spec = SPECS[name]
        if spec.pretrained is not None:
            files.append(weights_dir / pretrained_filename(spec.pretrained))
        else:
            manifest_path = checkpoint_dir / f"{name}.json"
            if manifest_path.exists():
                manifest = json.loads(manifest_path.read_text())
                files.append(checkpoint_dir / manifest["checkpoint"])
    return [path for path in files if path.exists()]


_FRESH_LOAD = (
    "import sys, torch, torchvision\n"
    "for p in sys.argv[1:]: torch.load(p, map_location='cpu', weights_only=True)"
)


def _import_s(statement: str) -> float:
    """Spawn to exit of a fresh process that runs ``statement`` (an import)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started


def _fresh_process_load_s(files: list[Path]) -> float:
    """Spawn to exit of a process that imports torch and torchvision and loads the six
    files: the same starting line as the server's cold start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _FRESH_LOAD, *map(str, files)], check=True)
    return time.perf_counter() - started


def _probe(files: list[Path]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _first_requests(client: httpx.Client) -> dict[str, dict[str, object]]:
    """One request to every model that is ready; each model's status and that answer."""
    png, jpeg = garment_png(), photo_jpeg()
    models: dict[str, dict[str, object]] = {}
    for info in client.get("/v1/models").json()["models"]:
        name = str(info["name"])
        entry: dict[str, object] = {"status": info["status"], "reason": info.get("reason")}
        entry["load_seconds"] = info.get("load_seconds")
        entry["graph"] = info.get("graph")
        models[name] = entry
        if info["status"] != "ready":
            continue
        if name == "gan":
            response = client.post(f"/v1/models/{name}/generate", json={"n": 8})
        else:
            upload = png if name in ("cnn", "lstm") else jpeg
            response = client.post(
                f"/v1/models/{name}/predict",
                content=upload.data,
                headers={"content-type": upload.content_type},
            )
        entry["first_request"] = response.status_code
        if response.status_code != 200:
            entry["reason"] = response.text[:300]
    return models


def measure_startup(
    checkpoint_dir: Path,
    requests: int = 10_000,
    concurrency: int = 32,
    env: dict[str, str] | None = None,
    weights_dir: Path | None = None,
    log_dir: Path | None = None,
    ready_timeout_s: float = 300.0,
) -> StartupResult:
    """Start a server with all six models, serve ``requests`` cnn predictions (plus one to
    every other model that is ready), then read its memory. ImageNet weights: random ones
    written under the official names (into ``weights_dir`` if given, kept there); the
    server's log goes to ``log_dir`` (kept) if given."""
    with tempfile.TemporaryDirectory(prefix="torchgate-startup-") as scratch:
        workdir = Path(scratch)
        weights_dir = weights_dir or workdir / "weights"
        for name in ("alexnet", "vgg16", "resnet101"):
            write_random_weights(name, weights_dir)
        files = _state_files(weights_dir, checkpoint_dir)
        probe = _probe(files)
        fresh_s = _fresh_process_load_s(files)
        torch_import_s = _import_s("import torch, torchvision")
        app_import_s = _import_s("import torch, torchvision, app.main")
        server_env = {
            **os.environ,
            "TORCHGATE_MODELS": ",".join(ALL_MODELS),
            "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
            "TORCHGATE_CHECKPOINT_DIR": str(checkpoint_dir),
            "TORCHGATE_VERIFY_WEIGHTS": "false",
            "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
            "TORCHGATE_ACCESS_LOG": "false",
            "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(32),
            **dict(env or {}),
        }
        server = ServerProcess(
            server_env,
            ready_timeout_s=ready_timeout_s,
            log_dir=log_dir or workdir,
            keep_log=log_dir is not None,
            settle_graphs=False,  # the first requests meet what readiness serves
        )
        with server:
            with httpx.Client(base_url=server.base_url, timeout=120) as client:
                models = _first_requests(client)
            png = garment_png()
            body = write_body(raw_body(png), workdir / "body.bin")
            target = LoadTarget(
                f"{server.base_url}/v1/models/cnn/predict", "POST", body, png.content_type, 1
            )
            _, driver = choose_driver("auto", workdir)
            served = errors = 0
            while models.get("cnn", {}).get("first_request") == 200 and served < requests:
                result = driver(target, LoadPlan(concurrency, duration_s=5.0))
                served += result.requests
                errors += result.errors
                if result.requests == 0:  # answered nothing in 5 s: report, don't spin
                    break
            rss, _ = server.memory()
            with httpx.Client(base_url=server.base_url, timeout=120) as client:
                for info in client.get("/v1/models").json()["models"]:
                    models.get(str(info["name"]), {})["graph_at_end"] = info.get("graph")
            return StartupResult(
                cold_start_s=server.cold_start_s,
                torch_load_s=float(probe["torch_load_s"]),
                fresh_process_load_s=fresh_s,
                rss_bytes=rss,
                baseline_rss_bytes=int(probe["baseline_rss"]),
                parameter_bytes=int(probe["parameter_bytes"]),
                requests=served,
                errors=errors,
                models=models,
                torch_import_s=torch_import_s,
                app_import_s=app_import_s,
            )
