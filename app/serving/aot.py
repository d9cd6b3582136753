"""torch.export + AOTInductor: compile a model once into a ``.pt2`` package and serve it.

The batch dimension is exported dynamic (1..max_batch_size, traced with a batch of 2 so it
is not specialised); every other dimension is fixed at the shapes the codecs produce (3x224x224,
1x28x28, the LSTM's 28 rows: its export specialises the sequence length, so shorter sequences
run eager). Inputs of other shapes, or larger batches (evaluation jobs), run the eager module.

Weights are kept out of the shared library (``package_constants_in_so=False``) and handed to
the loaded package as the module's own tensors (``user_managed``), so the package is small and
holds no second copy of them. Inductor may still fold a few constants into the code (the GAN's
last bias, for one); ``CompiledGraph.weights_external`` says whether every weight is external,
which decides whether a parameter swap can keep the graph (see ModelForward.rebuild).

A server compiles in a child process (``compile_package_isolated``): export swaps
``nn.Module.__call__`` process-wide while it traces, which would catch the serving thread's
eager forwards, and Inductor's code generation would hold the GIL for tens of seconds.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)
# Loading a package imports torch.utils.cpp_extension, which warns on a CPU host that no CUDA
# runtime is found: expected here, and a stray non-JSON line in TORCHGATE_LOG_FORMAT=json logs.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

EXPORT_BATCH = 2
INDUCTOR_CONFIGS: dict[str, Any] = {"aot_inductor.package_constants_in_so": False}


def _dynamic_batch(example: Sequence[torch.Tensor], max_batch: int) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return tuple({0: batch} for _ in example)


def export_example(example: Sequence[torch.Tensor], max_batch: int) -> tuple[torch.Tensor, ...]:
    """The example cut or tiled to the export batch (2, or 1 when the limit is 1)."""
    size = min(EXPORT_BATCH, max_batch)
    return tuple(t[:1].expand(size, *t.shape[1:]).clone() for t in example)


def compile_package(
    module: nn.Module,
    example: Sequence[torch.Tensor],
    max_batch: int,
    path: Path,
    freeze: bool = False,
) -> float:
    """Export ``module`` with a dynamic batch and write its AOTInductor package to ``path``;
    returns the seconds it took. ``freeze`` lets Inductor fold the weights into the code
    (batch norm into convolutions, prepacked oneDNN weights): faster, but every weight is
    then baked in, so no parameter swap can keep the graph."""
    started = time.perf_counter()
    inputs = export_example(example, max_batch)
    dynamic = _dynamic_batch(inputs, max_batch) if max_batch > 1 else None
    with torch.no_grad():
        program = torch.export.export(module, inputs, dynamic_shapes=dynamic)
    torch._inductor.aoti_compile_and_package(
        program,
        package_path=str(path),
        inductor_configs={**INDUCTOR_CONFIGS, "freezing": True} if freeze else INDUCTOR_CONFIGS,
    )
    return time.perf_counter() - started


def compiler_found() -> bool:
    """AOTInductor writes C++ and builds it with the host's compiler (``$CXX``, else g++ or
    clang++); loading a finished package needs none, so a host without one serves cached
    packages and eager."""
    candidates = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    return any(shutil.which(name) for name in candidates if name)


def _compile_in_child(
    module: nn.Module, example: tuple[torch.Tensor, ...], max_batch: int, path: str, threads: int
) -> None:
    with contextlib.suppress(OSError):
        os.nice(19)
    torch.set_num_threads(threads)
    torch._inductor.config.compile_threads = threads
    compile_package(module, example, max_batch, Path(path))


def compile_package_isolated(
    module: nn.Module,
    example: Sequence[torch.Tensor],
    max_batch: int,
    path: Path,
    threads: int = 1,
) -> float:
    """``compile_package`` in a spawned child at the lowest priority. The module reaches it
    through torch.multiprocessing's shared memory, as a copy: sharing moves a tensor's storage
    into shared memory in place, which must not happen under the serving thread's forwards.
    The copy lives while the child compiles (one more copy of the weights, for that time)."""
    started = time.perf_counter()
    context = torch.multiprocessing.get_context("spawn")
    child = context.Process(
        target=_compile_in_child,
        args=(copy.deepcopy(module), tuple(example), max_batch, str(path), threads),
        name="graph-compile",
        daemon=True,  # ends with the server
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the compiler process exited with code {child.exitcode}")
    return time.perf_counter() - started


class CompiledGraph:
    """A loaded package bound to the module's tensors, with eager for what it was not built for."""

    def __init__(
        self,
        path: Path,
        module: nn.Module,
        sample_shapes: Sequence[torch.Size],
        max_batch: int,
        device: torch.device,
    ) -> None:
        self.path = path
        self.module = module
        self.sample_shapes = tuple(sample_shapes)
        self.max_batch = max_batch
        index = device.index if device.type == "cuda" and device.index is not None else -1
        self.package = torch._inductor.aoti_load_package(str(path), device_index=index)
        self.weights_external = self.bind_weights()

    def bind_weights(self) -> bool:
        """Point the package at the module's current tensors; True if it reads every weight
        from them (so in-place parameter swaps reach it), False if some are baked in."""
        state = self.module.state_dict()
        names = set(self.package.get_constant_fqns())
        missing = names - state.keys()
        if missing:
            raise RuntimeError(f"the package wants tensors the module lacks: {sorted(missing)[:5]}")
        constants = {name: state[name] for name in names}
        self.package.load_constants(constants, check_full_update=True, user_managed=True)
        weights = {n for n in state if not n.endswith("num_batches_tracked")}
        return weights <= names

    def fits(self, columns: Sequence[torch.Tensor]) -> bool:
        return (
            len(columns) == len(self.sample_shapes)
            and 1 <= columns[0].shape[0] <= self.max_batch
            and all(c.shape[1:] == s for c, s in zip(columns, self.sample_shapes, strict=True))
        )

    def __call__(self, *columns: torch.Tensor) -> torch.Tensor:
        if self.fits(columns):
            return self.package(*(c.contiguous() for c in columns))
        return self.module(*columns)
