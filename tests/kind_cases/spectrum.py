"""Singular value spectra's test cases (see tests/kind_cases/__init__.py): a blob kind."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.damaged_logs import DAMAGED_STEP, Good, mutated, rng

MAIN_ARRAY = "singular_values"
# A good step is a conv weight's: its im2col spectrum (4 x 18) and its whole operator
# spectrum on a 4 x 4 input (64 values, the top OPERATOR_TOP_K kept, and quantiles).
WEIGHT_SHAPE = (4, 2, 3, 3)
INPUT_SIZE = (4, 4)
OPERATOR_TOP_K = 5


def _weight(tag: str, step: int) -> np.ndarray:
    return rng(tag, step).standard_normal(WEIGHT_SHAPE).astype(np.float32)


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.spectrum import spectrum_pb

    weight = _weight(tag, step)
    matrix = weight.astype(np.float64).reshape(WEIGHT_SHAPE[0], -1)
    reference = np.linalg.svd(matrix, compute_uv=False)[None, :]
    summary = spectrum_pb(
        tag,
        weight,
        layer_kind="Conv2d",
        input_size=INPUT_SIZE,
        operator="full",
        operator_top_k=OPERATOR_TOP_K,
    )
    return Good(summary, reference)


def operator_reference(tag: str, step: int) -> np.ndarray:
    """numpy's singular values of the good step's explicit circular operator matrix."""
    from tests.spectrum_data import operator_singular_values

    return operator_singular_values(_weight(tag, step), INPUT_SIZE)


def damages() -> dict[str, Callable]:
    def other_shape(step):  # 3 singular values where the metadata's [1, 6, 4] matrices have 4
        step.singular_values.CopyFrom(arrays.encode_array(np.array([[3.0, 2.0, 1.0]], np.float32)))

    def unchanged_self(step):
        step.Clear()
        step.unchanged = True
        step.unchanged_since_step = DAMAGED_STEP

    def operator_norm_off(step):  # not the largest of its own top values
        step.operator.operator_norm *= 0.5

    def operator_values_rising(step):
        top = arrays.decode_array(step.operator.top_values)[::-1].copy()
        step.operator.top_values.CopyFrom(arrays.encode_array(top))

    def operator_values_shortened(step):
        step.operator.top_values.data = step.operator.top_values.data[:-2]

    def operator_levels_dropped(step):
        del step.operator.quantile_levels[-1]

    def operator_size_zero(step):
        step.operator.input_size[0] = 0

    def coverage_unknown(step):
        step.coverage = 9

    return {
        "shape_vs_metadata": mutated("spectrum", other_shape),
        "unchanged_since_itself": mutated("spectrum", unchanged_self),
        "operator_norm_not_its_largest": mutated("spectrum", operator_norm_off),
        "operator_values_rising": mutated("spectrum", operator_values_rising),
        "operator_values_shortened": mutated("spectrum", operator_values_shortened),
        "operator_quantile_levels_dropped": mutated("spectrum", operator_levels_dropped),
        "operator_input_size_zero": mutated("spectrum", operator_size_zero),
        "coverage_unknown": mutated("spectrum", coverage_unknown),
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
    operator = body.get("operator") if route == "spectrum" else None
    if operator and not operator.get("error"):
        top = np.array([fuzz.number(v) for v in operator["top_values"]], np.float64)
        norm = fuzz.number(operator["operator_norm"])
        if not math.isfinite(norm) or norm < 0:
            problems.append(f"an operator norm {operator['operator_norm']} without an error")
        if top.size and (np.any(np.diff(top) > 0) or np.any(~(top >= 0))):
            problems.append("operator singular values that are not descending and >= 0")
        if top.size and abs(top[0] - norm) > 1e-5 * max(abs(norm), 1e-30):
            problems.append(f"an operator norm {norm} that is not its largest value {top[0]}")
        if len(operator["quantiles"]) != len(operator["quantile_levels"]):
            problems.append("operator quantiles that are not one per level")
        if any(n < 1 for n in operator["input_size"]):
            problems.append(f"an operator input size {operator['input_size']}")
    if route == "spectrum" and body.get("coverage") not in ("full", "top_k", "norm_only", None):
        problems.append(f"an unknown coverage {body.get('coverage')!r} served")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    want = series.good[step]
    found = []
    if route == "spectrum":
        found.append(
            fuzz.close(
                fuzz.slot(body["singular_values"]), want, 64 * fuzz.FLOAT32_EPS * float(want.max())
            )
        )
        operator = body.get("operator")
        if operator is None:
            found.append("the good step's operator spectrum is missing")
        else:
            reference = operator_reference(series.tag, step)
            scale = 64 * fuzz.FLOAT32_EPS * float(reference[0])
            top = [fuzz.number(v) for v in operator["top_values"]]
            found.append(fuzz.close(top, reference[:OPERATOR_TOP_K], scale))
            levels = operator["quantile_levels"]
            quantiles = [fuzz.number(v) for v in operator["quantiles"]]
            found.append(fuzz.close(quantiles, np.quantile(reference, levels), scale))
            if operator["count"] != reference.size:
                found.append(f"operator count {operator['count']}, numpy {reference.size}")
    return [f for f in found if f]


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
            operator = layer.get("operator") or {}
            served = operator.get("metrics", {}).get("operator_norm", [])
            want = float(operator_reference(series.tag, step)[0])
            found = fuzz.close(
                [fuzz.number(served[k]) if k < len(served) else math.nan],
                [want],
                64 * fuzz.FLOAT32_EPS * want,
            )
            if found:
                problem(f"operator norm of step {step}: {found}")
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
