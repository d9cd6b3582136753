"""Run one step of the device check under a time limit, and leave no process behind.

    python3 tools/device/step.py NAME SECONDS [--stdout FILE] [--record FILE] -- COMMAND...

The command runs in a session of its own; its output goes where this script's goes (the
check tees it into $OUT). This script is a child subreaper, so every process the step starts,
even one in a new session of its own (the bench's servers are) or orphaned by its parent,
stays its descendant. At the limit, and again when the command exits, every descendant left
is sent SIGTERM, then SIGKILL after a grace period: nothing keeps holding the GPU into the
next step. Exit status: the command's, or 124 when it ran out of time. ``--record`` appends
one JSON line (name, status, seconds) for the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 10.0


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError) as exc:  # still works for processes that stay children
        print(f"step: cannot become a child subreaper ({exc})", file=sys.stderr)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def _reap() -> None:
    """Collect exited descendants (orphans become this process's children)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_all(grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every descendant, SIGKILL those still there after ``grace_s``; returns the
    pids that were found."""
    found = descendants(os.getpid())
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap()
        if not descendants(os.getpid()):
            return found
        time.sleep(0.2)
    for pid in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    _reap()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--stdout", type=Path, default=None, help="the command's stdout to FILE")
    parser.add_argument("--record", type=Path, default=None, help="append the outcome here")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    _become_subreaper()
    print(f"=== {args.name}: limit {args.seconds:.0f} s: {' '.join(command)}", flush=True)
    started = time.monotonic()
    stdout = args.stdout.open("wb") if args.stdout is not None else None
    try:
        process = subprocess.Popen(command, stdout=stdout, start_new_session=True)
        try:
            status = process.wait(timeout=max(1.0, args.seconds))
        except subprocess.TimeoutExpired:
            print(f"=== {args.name}: TIMEOUT after {args.seconds:.0f} s; ending it", flush=True)
            end_all()
            process.wait()
            status = 124
    finally:
        if stdout is not None:
            stdout.close()
    left = end_all()
    if left:
        print(f"=== {args.name}: ended {len(left)} process(es) it left behind", flush=True)
    seconds = time.monotonic() - started
    print(f"=== {args.name}: exit {status} after {seconds:.1f} s", flush=True)
    if args.record is not None:
        with args.record.open("a") as record:
            outcome = {"step": args.name, "status": status, "seconds": round(seconds, 1)}
            record.write(json.dumps(outcome) + "\n")
    sys.exit(status)


if __name__ == "__main__":
    main()
