"""Turn an eager model into its serving form: eager, TorchScript (trace + freeze) or
torch.compile, optionally channels_last; checked against eager before it is used.

AOTInductor packages ("aot") are built in the background (app.serving.aot_builds) and swapped
in by ModelForward; here "aot" starts as eager. TorchScript is deprecated upstream: it is kept
only as a last resort (docs/graph-modes.md); the eager module stays the reference.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

GRAPH_MODES = ("eager", "aot", "script", "script-onednn", "compile")
# The TorchScript modes: traced once the model serves eager, rebuilt after a parameter swap.
# "script-onednn" adds torch.jit.optimize_for_inference to the frozen graph: batch norm folded
# into the convolutions, and the convolutions on oneDNN's blocked layout with their weights
# packed once (the cnn's batch of 16: 1.1-1.4 ms against 1.6-1.8 ms frozen, on one core).
TRACED_MODES = ("script", "script-onednn")
MAX_PROBABILITY_DIFF = 1e-4

Forward = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ServingGraph:
    mode: str
    channels_last: bool
    forward: Forward


# TorchScript is used knowingly where it measured faster (see the module docstring); its
# deprecation notices are filtered once, process-wide, because warnings.catch_warnings is not
# thread-safe and models are prepared in parallel threads.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*torch\.jit\.", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


def _trace_and_freeze(
    module: nn.Module, example: tuple[torch.Tensor, ...], onednn: bool = False
) -> Forward:
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False).eval()
        if onednn:  # freezes too
            return torch.jit.optimize_for_inference(traced)
        return torch.jit.freeze(traced)


def _compile(module: nn.Module) -> Forward:
    return torch.compile(module, dynamic=False)  # type: ignore[return-value]


def max_difference(
    graph: Forward, module: nn.Module, example: tuple[torch.Tensor, ...], classifier: bool
) -> float:
    """The largest difference from eager: of probabilities for a classifier, else outputs."""
    with torch.inference_mode():
        expected, got = module(*example).float(), graph(*example).float()
        if classifier:
            expected, got = expected.softmax(1), got.softmax(1)
        return float((expected - got).abs().max())


def build_graph(
    module: nn.Module,
    mode: str,
    channels_last: bool,
    example: tuple[torch.Tensor, ...],
    classifier: bool,
    convert_module: bool = True,
) -> ServingGraph:
    """The serving form of ``module``; falls back to eager if the graph disagrees or fails.
    ``convert_module=False``: the module already has the layout (it may be serving)."""
    if channels_last:
        if convert_module:
            module.to(memory_format=torch.channels_last)
        example = (example[0].contiguous(memory_format=torch.channels_last), *example[1:])
    if mode in ("eager", "aot"):  # "aot": eager until its package is ready (ModelForward)
        return ServingGraph("eager", channels_last, module)
    try:
        if mode in TRACED_MODES:
            graph = _trace_and_freeze(module, example, onednn=mode == "script-onednn")
        else:
            graph = _compile(module)
        difference = max_difference(graph, module, example, classifier)
    except Exception as exc:  # an unsupported op must not take the model down
        logger.warning("%s graph failed (%s); serving eager", mode, exc)
        return ServingGraph("eager", channels_last, module)
    if difference > MAX_PROBABILITY_DIFF:
        logger.warning("%s graph differs from eager by %.2e; serving eager", mode, difference)
        return ServingGraph("eager", channels_last, module)
    return ServingGraph(mode, channels_last, graph)
