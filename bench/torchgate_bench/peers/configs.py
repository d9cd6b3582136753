"""Peer configurations: workers, threads, batching, and the small grid the pre-pass tries.

A fair peer uses the cores as well as it can: workers x threads ~ cores (oversubscribing
2 cores costs more than any setting wins), with and without server-side batching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_GRID = "1x1,1x8,2x1,2x8"  # workers x batch size
DEFAULT_DELAY_MS = 5.0


@dataclass(frozen=True)
class PeerConfig:
    workers: int = 1
    threads: int = 2
    batch_size: int = 1
    batch_delay_ms: float = DEFAULT_DELAY_MS

    @property
    def label(self) -> str:
        batching = (
            f"batch {self.batch_size}, delay {self.batch_delay_ms:g} ms"
            if self.batch_size > 1
            else "no batching"
        )
        return f"{self.workers} worker(s) x {self.threads} thread(s), {batching}"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "label": self.label}


def parse_grid(
    spec: str, cores: int, delay_ms: float = DEFAULT_DELAY_MS, batching: bool = True
) -> list[PeerConfig]:
    """``"1x1,1x8,2x8"`` (workers x batch size) -> configs with threads = cores // workers.

    A peer without server-side batching (``batching=False``) keeps only the distinct worker
    counts, at batch size 1.
    """
    configs: list[PeerConfig] = []
    for item in spec.split(","):
        workers_text, sep, batch_text = item.strip().lower().partition("x")
        if not sep or not workers_text.isdigit() or not batch_text.isdigit():
            raise ValueError(f"grid entries are WORKERSxBATCH, e.g. 2x8; got {item.strip()!r}")
        workers, batch = int(workers_text), int(batch_text)
        if workers < 1 or batch < 1:
            raise ValueError(f"workers and batch size start at 1; got {item.strip()!r}")
        config = PeerConfig(
            workers=workers,
            threads=max(1, cores // workers),
            batch_size=batch if batching else 1,
            batch_delay_ms=delay_ms,
        )
        if config not in configs:
            configs.append(config)
    return configs
