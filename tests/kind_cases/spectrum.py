"""Singular value spectra's test cases (see tests/kind_cases/__init__.py): a blob kind."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.damaged_logs import DAMAGED_STEP, Good, mutated, rng

MAIN_ARRAY = "singular_values"


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.spectrum import spectrum_pb

    weight = rng(tag, step).standard_normal((6, 4)).astype(np.float32)
    reference = np.linalg.svd(weight.astype(np.float64), compute_uv=False)[None, :]
    return Good(spectrum_pb(tag, weight), reference)


def damages() -> dict[str, Callable]:
    def other_shape(step):  # 3 singular values where the metadata's [1, 6, 4] matrices have 4
        step.singular_values.CopyFrom(arrays.encode_array(np.array([[3.0, 2.0, 1.0]], np.float32)))

    def unchanged_self(step):
        step.Clear()
        step.unchanged = True
        step.unchanged_since_step = DAMAGED_STEP

    return {
        "shape_vs_metadata": mutated("spectrum", other_shape),
        "unchanged_since_itself": mutated("spectrum", unchanged_self),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {"spectrum": {"": {}}}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "spectrum_steps": {"": lambda s: {"tag": s.tag}},
    "spectrum_metrics": {
        "": lambda s: {"tag": s.tag},
        "max_steps": lambda s: {"tag": s.tag, "max_steps": 2},
        "whole_run": lambda s: {},
    },
    "spectrum_evolution": {
        "": lambda s: {"tag": s.tag},
        "small": lambda s: {"tag": s.tag, "max_steps": 2, "max_values": 2},
    },
}


def possible_numbers(route: str, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    problems = []
    if route == "spectrum" and "singular_values" in body:
        values = fuzz.slot(body["singular_values"]).astype(np.float64)
        finite = values[np.isfinite(values)]
        if np.any(finite < 0):
            problems.append(f"a negative singular value {finite.min():.4g} served without an error")
        if values.ndim == 2 and np.any(np.diff(values, axis=1) > 0):
            problems.append("singular values served without an error are not descending")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    want = series.good[step]
    found = None
    if route == "spectrum":
        found = fuzz.close(
            fuzz.slot(body["singular_values"]), want, 64 * fuzz.FLOAT32_EPS * float(want.max())
        )
    return [] if found is None else [found]


def check_series(series, request, body: dict, problem) -> None:
    if request.route == "spectrum_evolution":
        _evolution(series, body, problem)
    elif request.route == "spectrum_metrics":
        layer = body.get("layers", {}).get(series.tag)
        if layer is None:
            problem(f"the layer {series.tag!r} is missing from the metrics")
        else:
            _metrics(series, layer, request, problem)


def _evolution(series, body: dict, problem) -> None:
    from tests import damaged_fuzz as fuzz

    steps = body["steps"]
    errors = fuzz.errors_by_step(body.get("errors", []))
    for step in series.damaged:
        if step in steps and not errors.get(step):
            problem(f"the damaged step {step} carries no error: errors {body.get('errors')}")
    values = fuzz.slot(body["values"]).astype(np.float64)
    index = body["index"]
    for row, step in enumerate(steps):
        if step in series.damaged:
            if np.any(np.isfinite(values[row])):
                problem(f"the damaged step {step} is drawn with values {values[row].tolist()}")
        elif step in series.good:
            if errors.get(step):
                problem(f"the good step {step} carries the error {errors[step]!r}")
            want = np.sort(series.good[step].reshape(-1))[::-1][index]
            found = fuzz.close(values[row], want, 64 * fuzz.FLOAT32_EPS * float(want.max()))
            if found:
                problem(f"step {step}: {found}")


def _metrics(series, layer: dict, request, problem) -> None:
    from tests import damaged_fuzz as fuzz

    steps = layer["steps"]
    errors = fuzz.errors_by_step(layer.get("errors", []))
    norms = layer["metrics"]["spectral_norm"]
    for k, step in enumerate(steps):
        if step in series.damaged:
            if not errors.get(step):
                problem(f"the damaged step {step} carries no error: errors {layer.get('errors')}")
            if math.isfinite(fuzz.number(norms[k])):
                problem(f"the damaged step {step} has a spectral norm {norms[k]}")
        elif step in series.good:
            if errors.get(step):
                problem(f"the good step {step} carries the error {errors[step]!r}")
            want = float(series.good[step].max())
            found = fuzz.close([fuzz.number(norms[k])], [want], 64 * fuzz.FLOAT32_EPS * want)
            if found:
                problem(f"spectral norm of step {step}: {found}")
    if request.variant == "" and steps != sorted({*series.good, *series.damaged}):
        problem(f"metrics of steps {steps}, written {sorted({*series.good, *series.damaged})}")


def example() -> tuple[pb.SpectrumInfo, pb.SpectrumStep]:
    """A good step for tests/unit/test_blob_steps.py."""
    values = np.array([[3.0, 2.0, 0.5]], np.float32)
    info = pb.SpectrumInfo(weight_shape=[3, 4], matrix_rule="rows x cols", matrix_shape=[1, 3, 4])
    step = pb.SpectrumStep(
        singular_values=arrays.encode_array(values),
        metrics=pb.SpectrumMetrics(spectral_norm=3.0, numerical_rank=3),
    )
    return info, step
