"""Why a classifier answered as it did: attributions over one input, computed by Captum.

Three of Captum's methods, on the target class's logit (the score before softmax):
``integrated_gradients`` (from a baseline of zeros or of the blurred input, with Captum's
convergence delta: how far the attributions' sum is from f(input) - f(baseline)),
``saliency`` (the input gradient) and ``gradcam`` (on the last conv block that the model's
spec names, upsampled to the input). Attributions always have the input's shape.

The module is used as it serves: on its device, in eval mode (BatchNorm and Dropout as in
serving), its parameters never requiring gradients; only the input does. Everything here
runs on the device worker (app/serving/device_worker.py), between predict batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from app.errors import BadRequest
from app.zoo import ExplainSpec

METHODS = ("integrated_gradients", "saliency", "gradcam")
BASELINES = ("zeros", "blur")
DEFAULT_METHOD = "integrated_gradients"
DEFAULT_STEPS = 32
MAX_STEPS = 256
BLUR_SIGMA_FRACTION = 0.1  # the blurred baseline's sigma, as a share of the shorter side

Checkpoint = Callable[[], None]


@dataclass(frozen=True)
class ExplainOptions:
    """What a client asked for; ``target`` None: the predicted class."""

    method: str = DEFAULT_METHOD
    steps: int = DEFAULT_STEPS
    baseline: str = "zeros"
    target: int | None = None

    def checked(self, spec: ExplainSpec | None, model: str, classes: int) -> ExplainOptions:
        """These options, or the BadRequest (400) that says what to change."""
        if spec is None:
            raise BadRequest(
                f"model {model!r} is a generator, not a classifier: it has no class score to "
                f"explain (POST /v1/models/{model}/generate draws its images); explain a "
                "classifier instead."
            )
        if self.method not in METHODS:
            raise BadRequest(
                f"method must be one of {', '.join(METHODS)}; got {self.method[:40]!r}."
            )
        if self.method == "gradcam" and spec.gradcam_layer is None:
            raise BadRequest(
                f"model {model!r} has no convolutional block for gradcam; use "
                "integrated_gradients or saliency."
            )
        if not 1 <= self.steps <= MAX_STEPS:
            raise BadRequest(f"steps must be between 1 and {MAX_STEPS}; got {self.steps}.")
        if self.baseline not in BASELINES:
            raise BadRequest(
                f"baseline must be one of {', '.join(BASELINES)}; got {self.baseline[:40]!r}."
            )
        if self.target is not None and not 0 <= self.target < classes:
            raise BadRequest(f"target must be a class index 0..{classes - 1}; got {self.target}.")
        return self


@dataclass(frozen=True)
class Attribution:
    """One explained input: the explained forward's probabilities, the target class, the
    attributions (the input's shape, float32, on the CPU) and, for integrated gradients,
    Captum's convergence delta."""

    probabilities: np.ndarray
    target: int
    values: np.ndarray
    delta: float | None = None


def blurred(x: torch.Tensor, fraction: float = BLUR_SIGMA_FRACTION) -> torch.Tensor:
    """``x`` ([..., H, W]) under a Gaussian blur whose sigma is ``fraction`` of its shorter side;
    the kernel never reaches past an edge (reflection needs it), so one row stays one row."""
    height, width = x.shape[-2:]
    sigma = max(0.5, fraction * min(height, width))
    reach = math.ceil(3 * sigma)
    kernel = [2 * min(reach, side - 1) + 1 for side in (width, height)]  # x first, then y
    if x.dim() == 2:  # one unbatched sequence: torchvision blurs [..., C, H, W]
        return gaussian_blur(x[None], kernel_size=kernel, sigma=[sigma, sigma])[0]
    return gaussian_blur(x, kernel_size=kernel, sigma=[sigma, sigma])


def baseline_for(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Integrated gradients' starting point: all zeros (the mean input, once normalized), or
    the input blurred (its coarse shapes kept, its detail removed)."""
    return torch.zeros_like(x) if kind == "zeros" else blurred(x)


def attribute(
    module: nn.Module,
    spec: ExplainSpec,
    sample: torch.Tensor,
    options: ExplainOptions,
    chunk: int,
    checkpoint: Checkpoint = lambda: None,
) -> Attribution:
    """Explain one sample (no batch dimension, on the module's device).

    Integrated gradients runs its steps ``chunk`` at a time and calls ``checkpoint`` before
    each chunk's forward: the device worker's yield point, where waiting predict batches run
    (Grad-CAM's layer hooks are in place during its one forward, so it does not yield)."""
    first = next(module.parameters(), None)
    dtype = first.dtype if first is not None else torch.float32
    x = sample.unsqueeze(0).to(dtype=dtype).requires_grad_(True)

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        return module(inputs).float()

    def yielding(inputs: torch.Tensor) -> torch.Tensor:
        checkpoint()
        return logits(inputs)

    with torch.no_grad():
        scores = logits(x)[0]
    target = options.target if options.target is not None else int(scores.argmax())
    probabilities = scores.softmax(0).cpu().numpy()
    delta = None
    with torch.enable_grad():
        if options.method == "integrated_gradients":
            values, deltas = IntegratedGradients(yielding).attribute(
                x,
                baselines=baseline_for(x.detach(), options.baseline),
                target=target,
                n_steps=options.steps,
                internal_batch_size=chunk,
                return_convergence_delta=True,
            )
            delta = float(deltas[0])
        elif options.method == "saliency":
            values = Saliency(logits).attribute(x, target=target, abs=False)
        else:
            assert spec.gradcam_layer is not None  # ExplainOptions.checked refused it
            layer = module.get_submodule(spec.gradcam_layer)
            cam = LayerGradCam(logits, layer).attribute(x, target=target, relu_attributions=True)
            values = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
            values = values.expand_as(x)
    array = values.detach()[0].float().cpu().numpy()
    return Attribution(probabilities, target, np.ascontiguousarray(array), delta)
