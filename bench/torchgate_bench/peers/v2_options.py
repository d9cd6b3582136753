"""What ``bench --peer triton,kserve`` is asked to do, and what one run found: the options,
and the result every report (screen, JSON document, results record) is drawn from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchgate_bench.peers.compare import GridEntry
from torchgate_bench.peers.requirements import DEFAULT_V2_PYTHON, V2_PEERS
from torchgate_bench.peers.v2_compare import Measurements
from torchgate_bench.peers.v2_servers import V2Config


@dataclass(frozen=True)
class V2Options:
    peers: tuple[str, ...] = V2_PEERS
    concurrency: int = 32
    heavy_model: str | None = "resnet101"  # None: the cnn only
    heavy_concurrency: int = 8
    heavy_grpc: bool = True
    rounds: int = 3
    duration_s: float = 10.0  # per series and round
    warmup_s: float = 2.0
    prepass: bool = True  # False: each peer's first grid configuration, unmeasured
    pythons: dict[str, Path] = field(default_factory=lambda: dict(DEFAULT_V2_PYTHON))
    checkpoint_dir: Path = Path("models")
    weights_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()
    load_tool: str = "auto"
    ready_timeout_s: float = 300.0
    log_dir: Path | None = None

    def concurrency_for(self, model: str) -> int:
        return self.concurrency if model == "cnn" else self.heavy_concurrency

    @property
    def prepass_s(self) -> float:
        """Each pre-pass configuration is measured for half a round (at least 2 s)."""
        return max(2.0, self.duration_s / 2)


@dataclass
class V2PeersResult:
    options: V2Options
    tools: dict[str, str]  # protocol -> load generator
    machine: dict[str, Any]
    load_average_end: list[float]
    torchgate: dict[str, Any]
    configs: dict[str, dict[str, V2Config]]  # peer -> model -> the configuration chosen
    prepass: dict[str, dict[str, list[GridEntry[V2Config]]]]  # peer -> model -> grid
    answers: dict[str, dict[str, Any]]  # series key -> verdict against torchgate's v2 REST
    measurements: Measurements
    inputs: dict[str, Any]
    versions: dict[str, str | None] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)  # chosen configurations that did not start

    def to_document(self) -> dict[str, Any]:
        options = self.options
        return {
            **self.machine,
            "load_average_end": self.load_average_end,
            "tools": self.tools,
            "rounds": options.rounds,
            "round_seconds": options.duration_s,
            "warmup_s": options.warmup_s,
            "inputs": self.inputs,
            "torchgate": self.torchgate,
            "versions": self.versions,
            "configs": {
                peer: {model: config.to_dict() for model, config in chosen.items()}
                for peer, chosen in self.configs.items()
            },
            "prepass": {
                peer: {
                    model: [entry.to_dict() for entry in grid] for model, grid in by_model.items()
                }
                for peer, by_model in self.prepass.items()
            },
            "answers": self.answers,
            **self.measurements.to_dict(),
        }
