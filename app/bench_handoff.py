"""The bench's commands on the service's command line (``python -m app bench ...``), handed
over to the separate ``torchgate_bench`` package (``bench/``, STYLE rule 15).

The service never imports the bench: when it is installed, this process becomes
``python -m torchgate_bench <command>`` with the same arguments (same pid, so signals and the
exit status are the bench's own); when it is not, one sentence says how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable

import typer

BENCH_PACKAGE = "torchgate_bench"
BENCH_COMMANDS = {
    "bench": "Serve a model in a real server process, load it from another, compare with raw.",
    "soak": "Load a real server for minutes and report its memory growth (goal: under 5 %).",
    "bench-replicas": "Admin fan-out across 3 replicas (Redis, SQLite file), the store's cost.",
    "bench-graphs": "Forward ms, build seconds and package size of each graph mode, per model.",
    "bench-builds": "Two builds of torchgate side by side (a change against the commit before).",
    "bench-explain": "Explain latency (integrated gradients, saliency, Grad-CAM) beside predict's.",
    "bench-precision": "float32 against bfloat16, float16 and int8_dynamic per model (the gate).",
}
INSTALL_HINT = (
    "The bench is its own package, torchgate_bench: install it with `pip install -e ./bench` "
    "from the repository root, then run this command again."
)
# every argument, --help included, goes to the bench unparsed
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def add_bench_commands(cli: typer.Typer) -> None:
    """Register each bench command on ``cli`` as a hand-over to ``python -m torchgate_bench``."""
    for name, summary in BENCH_COMMANDS.items():
        cli.command(
            name,
            help=f"{summary} (torchgate_bench)",
            context_settings=_PASS_THROUGH,
            add_help_option=False,
        )(_hand_over(name))


def _hand_over(command: str) -> Callable[[typer.Context], None]:
    def hand_over(context: typer.Context) -> None:
        if importlib.util.find_spec(BENCH_PACKAGE) is None:
            typer.echo(INSTALL_HINT, err=True)
            raise typer.Exit(2)
        sys.stdout.flush()
        sys.stderr.flush()
        arguments = [sys.executable, "-m", BENCH_PACKAGE, command, *context.args]
        os.execv(sys.executable, arguments)

    return hand_over
