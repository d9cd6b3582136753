"""What one ``bench`` run is asked to do, its server scenarios, and the environment each
server gets: decided by the command line, read by the runner and the reports."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

BATCHING_OFF = {"TORCHGATE_MAX_BATCH_SIZE": "1"}


@dataclass(frozen=True)
class BenchConfig:
    """Everything the command line decides; defaults suit a quick look at one model."""

    model: str
    concurrency: int = 8
    duration_s: float = 10.0
    warmup_s: float = 2.0
    images_per_request: int = 1
    upload: str = "multipart"  # multipart | raw (one image as the body)
    batching: str = "on"  # on | off | both
    baseline_healthz: bool = False
    workers: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()
    weights_dir: Path | None = None
    checkpoint_dir: Path = Path("models")
    raw: bool = True
    raw_budget_s: float = 20.0
    try_compile: bool = False
    raw_threads: int | None = None
    load_tool: str = "auto"  # auto | wrk | httpx
    ready_timeout_s: float = 300.0
    protocol: str = "v1"  # v1 | v2 | grpc | all (the three in alternating rounds, one server)
    log_dir: Path | None = None  # keep every server's log here (default: only failed ones)
    # What the server loads next to ``model``: None is serve's default, all six, as users run
    # it (the models share the device worker and the cores, so one alone flatters the figure).
    served_models: tuple[str, ...] | None = None

    @property
    def server_models(self) -> tuple[str, ...]:
        from app.config import ALL_MODELS

        models = self.served_models if self.served_models is not None else ALL_MODELS
        return models if self.model in models else (*models, self.model)


@dataclass(frozen=True)
class Scenario:
    name: str
    env: dict[str, str]


def scenarios_for(batching: str) -> list[Scenario]:
    """``on`` is the configured batching (spec defaults or --env); ``off`` is batch size 1."""
    chosen = {"on": ["on"], "off": ["off"], "both": ["on", "off"]}[batching]
    return [Scenario(f"batching {name}", BATCHING_OFF if name == "off" else {}) for name in chosen]


def server_env(config: BenchConfig, weights_dir: Path, random_weights: bool) -> dict[str, str]:
    """The caller's environment with the bench's settings on top, then the user's --env."""
    env = dict(os.environ)
    env.update(
        {
            "TORCHGATE_MODELS": ",".join(config.server_models),
            "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
            "TORCHGATE_CHECKPOINT_DIR": str(config.checkpoint_dir.resolve()),
            "TORCHGATE_DOWNLOAD_WEIGHTS": "false",  # loopback only: never fetch during a bench
            "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(32),
        }
    )
    if random_weights:
        env["TORCHGATE_VERIFY_WEIGHTS"] = "false"
    env.update(config.extra_env)
    return env
