"""Stand-in interpreters for the v2 peers' venvs: ``bench --peer`` checks that each named
peer's python exists before it runs anything, so command tests give it files that do."""

from __future__ import annotations

from pathlib import Path

from torchgate_bench.peers.requirements import V2_PEERS


def stand_in_v2_pythons(folder: Path) -> dict[str, Path]:
    """An empty file per v2 peer under ``folder`` (``triton/python``, ``kserve/python``)."""
    pythons = {peer: folder / peer / "python" for peer in V2_PEERS}
    for python in pythons.values():
        python.parent.mkdir(parents=True)
        python.touch()
    return pythons
