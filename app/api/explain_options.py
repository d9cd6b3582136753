"""An explanation's parameters, read alike from v1's query string and v2's output parameters."""

from __future__ import annotations

import re
from collections.abc import Mapping

from app.errors import BadRequest
from app.serving.explain import DEFAULT_METHOD, DEFAULT_STEPS, ExplainOptions
from app.serving.runtime import ModelRuntime

EXPLAIN_KEYS = ("method", "steps", "baseline", "target")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits, few enough for any int()


def _shown(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _integer(values: Mapping[str, object], key: str) -> int | None:
    value = values.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise BadRequest(f"{key} must be an integer; got {_shown(value)}.")


def _text(values: Mapping[str, object], key: str, default: str) -> str:
    value = values.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string; got {_shown(value)}.")
    return value


def explain_options(values: Mapping[str, object], runtime: ModelRuntime) -> ExplainOptions:
    """The checked options (400 naming what to change): method, steps, baseline, target."""
    steps = _integer(values, "steps")
    options = ExplainOptions(
        method=_text(values, "method", DEFAULT_METHOD),
        steps=DEFAULT_STEPS if steps is None else steps,
        baseline=_text(values, "baseline", "zeros"),
        target=_integer(values, "target"),
    )
    return options.checked(runtime.spec.explain, runtime.spec.name, len(runtime.labels))


def describe(options: ExplainOptions) -> dict[str, object]:
    """The options as answers echo them (steps and baseline are integrated gradients' own)."""
    if options.method != "integrated_gradients":
        return {"method": options.method}
    return {"method": options.method, "steps": options.steps, "baseline": options.baseline}
