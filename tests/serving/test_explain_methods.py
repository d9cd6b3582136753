"""Captum's methods as the service runs them (app/serving/explain.py), checked against what
they claim: integrated gradients' completeness, computed here; saliency against autograd;
Grad-CAM's map non-negative and shaped like the input."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from app.errors import BadRequest
from app.serving.explain import MAX_STEPS, ExplainOptions, attribute, baseline_for, blurred
from app.serving.loading import WeightsLocation, load_model
from app.zoo import SPECS
from tests.helpers.repo import REPO_ROOT

# resnet101 at a small input (its global pooling takes any size): 32 px keeps its forwards and
# backwards affordable on a CPU, and reaches every block, layer4 included (1x1 there).
INPUTS = {"cnn": (1, 28, 28), "lstm": (28, 28), "resnet101": (3, 32, 32)}


@pytest.fixture(scope="module")
def modules() -> dict[str, nn.Module]:
    """The served cnn and lstm (committed checkpoints), and resnet101 with random weights,
    each as the loader leaves it: eval mode, no parameter requiring gradients."""
    where = WeightsLocation(Path("/nonexistent"), REPO_ROOT / "models", False, False)
    cpu = torch.device("cpu")
    served = {name: load_model(SPECS[name], where, cpu).module for name in ("cnn", "lstm")}
    torch.manual_seed(0)
    served["resnet101"] = torchvision.models.resnet101(weights=None).eval().requires_grad_(False)
    return served


def _input(name: str, seed: int = 0) -> torch.Tensor:
    return torch.randn(INPUTS[name], generator=torch.Generator().manual_seed(seed))


def _score(module: nn.Module, x: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return float(module(x.unsqueeze(0))[0, target].double())


@pytest.mark.parametrize("baseline", ["zeros", "blur"])
@pytest.mark.parametrize("name", ["cnn", "lstm", "resnet101"])
def test_integrated_gradients_sum_to_the_score_difference_within_the_delta(
    modules: dict[str, nn.Module], name: str, baseline: str
) -> None:
    module, x = modules[name], _input(name)
    steps = 16 if name == "resnet101" else 32
    options = ExplainOptions(steps=steps, baseline=baseline)
    explained = attribute(module, SPECS[name].explain, x, options, chunk=16)
    assert explained.values.shape == x.shape and explained.delta is not None
    # f(input) - f(baseline) for the target's logit, computed here, not taken from Captum
    target = explained.target
    difference = _score(module, x, target) - _score(module, baseline_for(x, baseline), target)
    total = float(explained.values.astype("float64").sum())
    scale = max(1.0, abs(difference))
    tolerance = 1e-4 * scale
    # completeness: the attributions' sum misses the difference by no more than the delta
    assert abs(total - difference) <= abs(explained.delta) + tolerance
    # and the delta Captum reports is that miss, as we measure it
    assert explained.delta == pytest.approx(total - difference, abs=tolerance)


def test_a_smooth_model_converges_and_more_steps_do_not_hurt(
    modules: dict[str, nn.Module],
) -> None:
    """The lstm (tanh and sigmoid, no kinks): IG's miss is small, and smaller with more steps."""
    module, x = modules["lstm"], _input("lstm", seed=1)
    spec = SPECS["lstm"].explain
    coarse = attribute(module, spec, x, ExplainOptions(steps=8), chunk=64)
    fine = attribute(module, spec, x, ExplainOptions(steps=128), chunk=64)
    difference = float(fine.values.sum()) - float(fine.delta or 0.0)
    assert abs(fine.delta or 0.0) <= 1e-3 * max(1.0, abs(difference))
    assert abs(fine.delta or 0.0) <= abs(coarse.delta or 0.0) + 1e-5


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_saliency_is_the_input_gradient_of_the_target_logit(
    modules: dict[str, nn.Module], name: str
) -> None:
    module, x = modules[name], _input(name, seed=2)
    explained = attribute(module, SPECS[name].explain, x, ExplainOptions("saliency"), chunk=1)
    leaf = x.unsqueeze(0).clone().requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(module(leaf)[0, explained.target], leaf)
    torch.testing.assert_close(torch.from_numpy(explained.values), gradient[0])
    with torch.no_grad():
        assert explained.target == int(module(x.unsqueeze(0))[0].argmax())


def test_an_asked_target_is_the_one_explained(modules: dict[str, nn.Module]) -> None:
    module, x = modules["cnn"], _input("cnn", seed=3)
    spec = SPECS["cnn"].explain
    predicted = attribute(module, spec, x, ExplainOptions("saliency"), chunk=1)
    other = (predicted.target + 1) % 10
    asked = attribute(module, spec, x, ExplainOptions("saliency", target=other), chunk=1)
    assert asked.target == other
    assert not (asked.values == predicted.values).all()
    # the prediction is reported either way, the same
    assert (asked.probabilities == predicted.probabilities).all()
    assert asked.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["cnn", "resnet101"])
def test_gradcam_is_non_negative_and_shaped_like_the_input(
    modules: dict[str, nn.Module], name: str
) -> None:
    module, x = modules[name], _input(name, seed=4)
    explained = attribute(module, SPECS[name].explain, x, ExplainOptions("gradcam"), chunk=1)
    assert explained.values.shape == x.shape
    assert (explained.values >= 0).all()
    assert explained.values.max() > 0  # a map, not all zeros
    assert explained.delta is None
    # one map for every channel of the input
    assert (explained.values == explained.values[:1]).all()


def test_explaining_leaves_the_module_as_it_serves(modules: dict[str, nn.Module]) -> None:
    module = modules["cnn"]
    for method in ("integrated_gradients", "saliency", "gradcam"):
        attribute(module, SPECS["cnn"].explain, _input("cnn"), ExplainOptions(method), chunk=8)
    assert not module.training
    assert not any(p.requires_grad for p in module.parameters())
    assert all(p.grad is None for p in module.parameters())
    # no hook left behind by Grad-CAM
    assert all(not m._forward_hooks and not m._backward_hooks for m in module.modules())


def test_the_blurred_baseline_keeps_the_shape_and_the_mean() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 10:18] = 1.0
    soft = blurred(x)
    assert soft.shape == x.shape
    assert soft.max() < 1.0 and soft[..., 0, 0] >= 0
    assert float(soft.sum()) == pytest.approx(float(x.sum()), rel=0.05)
    # an lstm's one-row sequence: blurred along the row only
    row = torch.arange(28.0).reshape(1, 1, 28)
    assert blurred(row).shape == row.shape


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cnn", ExplainOptions(steps=MAX_STEPS + 1), "steps must be between 1 and 256"),
        ("cnn", ExplainOptions(steps=0), "steps must be between 1 and 256"),
        ("cnn", ExplainOptions("occlusion"), "method must be one of"),
        ("cnn", ExplainOptions(baseline="noise"), "baseline must be one of zeros, blur"),
        ("cnn", ExplainOptions(target=10), "target must be a class index 0..9"),
        ("lstm", ExplainOptions("gradcam"), "no convolutional block for gradcam"),
        ("gan", ExplainOptions(), "is a generator, not a classifier"),
    ],
)
def test_options_are_refused_with_what_to_change(
    name: str, options: ExplainOptions, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        options.checked(SPECS[name].explain, name, 10)


def test_every_classifier_can_be_explained_and_gradcam_names_a_real_layer() -> None:
    for name, spec in SPECS.items():
        assert (spec.explain is not None) == spec.is_classifier, name
        if spec.explain is None or spec.explain.gradcam_layer is None:
            continue
        with torch.device("meta"):  # the architecture only: no memory, no initialisation
            if spec.pretrained is not None:
                module = torchvision.models.get_model(name, weights=None)
            else:
                assert spec.net_module is not None
                net = importlib.import_module(spec.net_module)
                module = getattr(net, net.__all__[0])()
        layer = module.get_submodule(spec.explain.gradcam_layer)  # raises if the name is wrong
        assert isinstance(layer, nn.ReLU | nn.Sequential), (name, layer)
