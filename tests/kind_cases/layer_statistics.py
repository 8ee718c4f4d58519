"""Layer statistics' test cases (see tests/kind_cases/__init__.py): a tensor kind.

A good step carries both parts: the three `LAYER_NAMES` rows with every
activation statistic (valid ranges: fractions in [0, 1], norms ≥ 0), counts,
channels, dead channels and each row's covariance eigenvalues (numpy's
`eigvalsh` of a random covariance, descending), and the `PARAMETER_NAMES` rows
with their three norms, one of them (`WITHOUT_GRADIENT`) without a gradient
(NaN gradient norm and ratio, listed in `without_gradient`: served as not
measured, null / in base64's `not_measured`). `Good.values` is the activations matrix [L, A];
`reference(tag, step)` rebuilds every array of the step from the same seed,
for the checks of the step and spectrum routes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from tests.damaged_logs import (
    LAYER_NAMES,
    PARAMETER_NAMES,
    Good,
    float_tensor,
    mutated,
    rng,
    string_vector,
)

KIND = "layer_statistics"
MAIN_ARRAY = "activations"
NAMES = LAYER_NAMES
ACTIVATION_STATISTICS = (
    "mean",
    "std",
    "rms",
    "max_abs",
    "zero_fraction",
    "saturated_fraction",
    "non_finite_fraction",
    "dead_fraction",
    "effective_dimension",
    "saturation",
    "effective_rank",
)
PARAMETER_STATISTICS = ("grad_norm", "weight_norm", "grad_to_weight")
FRACTIONS = ("zero_fraction", "saturated_fraction", "non_finite_fraction", "dead_fraction")
CHANNELS = (4, 6, 3)  # per layer
SPECTRUM_LAYER = LAYER_NAMES[1]
WITHOUT_GRADIENT = 1  # PARAMETER_NAMES[1] has no gradient at any good step


@dataclasses.dataclass(frozen=True)
class Reference:
    """Every array of a good step, as generated (float32 where stored so)."""

    activations: np.ndarray  # [L, A]
    counts: np.ndarray
    channels: np.ndarray
    dead_channels: np.ndarray
    eigenvalues: list[np.ndarray]  # per layer, descending
    samples: np.ndarray
    parameters: np.ndarray  # [P, B]; NaN gradient statistics at WITHOUT_GRADIENT


def reference(tag: str, step: int) -> Reference:
    """The good step's arrays, from `damaged_logs.rng(tag, step)`."""
    gen = rng(tag, step)
    layers = len(LAYER_NAMES)
    values = np.empty((layers, len(ACTIVATION_STATISTICS)), np.float64)
    column = {name: k for k, name in enumerate(ACTIVATION_STATISTICS)}
    values[:, column["mean"]] = gen.normal(0.0, 1.0, layers)
    values[:, column["std"]] = gen.lognormal(0.0, 0.5, layers)
    values[:, column["rms"]] = np.hypot(values[:, column["mean"]], values[:, column["std"]])
    values[:, column["max_abs"]] = values[:, column["rms"]] * gen.uniform(2.0, 5.0, layers)
    for name in FRACTIONS:
        values[:, column[name]] = gen.uniform(0.0, 1.0, layers)
    channels = np.asarray(CHANNELS, np.int64)
    dead = (channels * values[:, column["dead_fraction"]]).astype(np.int64)
    values[:, column["dead_fraction"]] = dead / channels
    eigenvalues = []
    for c in CHANNELS:
        a = gen.normal(size=(c, 2 * c))
        eigenvalues.append(np.sort(np.linalg.eigvalsh(a @ a.T / (2 * c)))[::-1].astype(np.float32))
    for i, lam in enumerate(eigenvalues):
        lam64 = lam.astype(np.float64)
        p = lam64 / lam64.sum()
        values[i, column["effective_dimension"]] = lam64.sum() ** 2 / (lam64**2).sum()
        needed = int(np.searchsorted(np.cumsum(p), 0.99) + 1)
        values[i, column["saturation"]] = min(needed, lam.size) / lam.size
        values[i, column["effective_rank"]] = np.exp(-(p * np.log(p)).sum())
    grad = gen.lognormal(np.log(1e-2), 1.0, len(PARAMETER_NAMES))
    weight = gen.lognormal(0.0, 0.5, len(PARAMETER_NAMES))
    parameters = np.stack([grad, weight, grad / weight], axis=1)
    parameters[WITHOUT_GRADIENT, [0, 2]] = np.nan
    return Reference(
        activations=values.astype(np.float32),
        counts=np.asarray([2048, 4096, 96], np.int64),
        channels=channels,
        dead_channels=dead,
        eigenvalues=eigenvalues,
        samples=np.asarray([512, 1024, 32], np.int64),
        parameters=parameters.astype(np.float32),
    )


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.layer_statistics import ActivationRows, ParameterRows, layer_statistics_pb

    ref = reference(tag, step)
    activations = ActivationRows(
        names=LAYER_NAMES,
        values=ref.activations,
        statistics=ACTIVATION_STATISTICS,
        types=("Conv2d", "ReLU", "Linear"),
        counts=ref.counts,
        channels=ref.channels,
        dead_channels=ref.dead_channels,
        eigenvalues=ref.eigenvalues,
        covariance_samples=ref.samples,
    )
    parameters = ParameterRows(
        PARAMETER_NAMES, ref.parameters, PARAMETER_STATISTICS, without_gradient=[WITHOUT_GRADIENT]
    )
    summary = layer_statistics_pb(tag, activations, parameters, seconds=0.01)
    return Good(summary, ref.activations)


def damages() -> dict[str, Callable]:
    def dead_over_channels(step):
        dead = arrays.decode_array(step.channels).copy()
        dead[0] += 1
        step.dead_channels.CopyFrom(arrays.encode_array(dead))

    def eigenvalue_counts(step):
        counts = arrays.decode_array(step.eigenvalue_counts).copy()
        counts[0] += 1
        step.eigenvalue_counts.CopyFrom(arrays.encode_array(counts))

    def negative_eigenvalue(step):
        values = arrays.decode_array(step.eigenvalues).copy()
        values[0] = -1.0
        step.eigenvalues.CopyFrom(arrays.encode_array(values))

    def fraction_out_of_range(step):
        values = arrays.decode_array(step.activations).copy()
        values[1, ACTIVATION_STATISTICS.index("zero_fraction")] = 1.5
        step.activations.CopyFrom(arrays.encode_array(values))

    def negative_norm(step):
        values = arrays.decode_array(step.parameter_values).copy()
        values[0, 0] = -0.5
        step.parameter_values.CopyFrom(arrays.encode_array(values))

    def duplicate_layers(step):
        step.layers[:] = [LAYER_NAMES[0]] * len(LAYER_NAMES)

    def layer_types(step):
        step.layer_types[:] = ["Conv2d"]

    def parameter_shape(step):
        values = np.ones((len(PARAMETER_NAMES) + 1, len(PARAMETER_STATISTICS)), np.float32)
        step.parameter_values.CopyFrom(arrays.encode_array(values))

    def without_gradient_out_of_range(step):
        step.without_gradient.append(len(PARAMETER_NAMES))

    def without_gradient_twice(step):
        step.without_gradient.append(WITHOUT_GRADIENT)

    def without_gradient_measured(step):
        step.without_gradient[:] = [0, WITHOUT_GRADIENT]  # parameter 0 has a gradient norm

    def without_gradient_no_parameters(step):
        del step.parameters[:]
        del step.parameter_statistics[:]
        step.ClearField("parameter_values")

    def counts_dtype(step):
        step.counts.CopyFrom(arrays.encode_array(np.ones(len(LAYER_NAMES), np.float32)))

    def negative_count(step):
        step.covariance_samples.CopyFrom(arrays.encode_array(np.asarray([-1, 2, 3], np.int64)))

    return {
        "dead_over_channels": mutated(KIND, dead_over_channels),
        "eigenvalue_counts_mismatch": mutated(KIND, eigenvalue_counts),
        "negative_eigenvalue": mutated(KIND, negative_eigenvalue),
        "fraction_out_of_range": mutated(KIND, fraction_out_of_range),
        "negative_norm": mutated(KIND, negative_norm),
        "duplicate_layers": mutated(KIND, duplicate_layers),
        "layer_types_count": mutated(KIND, layer_types),
        "parameter_values_shape": mutated(KIND, parameter_shape),
        "without_gradient_out_of_range": mutated(KIND, without_gradient_out_of_range),
        "without_gradient_twice": mutated(KIND, without_gradient_twice),
        "without_gradient_measured": mutated(KIND, without_gradient_measured),
        "without_gradient_no_parameters": mutated(KIND, without_gradient_no_parameters),
        "counts_dtype": mutated(KIND, counts_dtype),
        "negative_count": mutated(KIND, negative_count),
        "float_tensor": float_tensor(KIND),
        "string_vector": string_vector(KIND),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {"layer_statistics_step": {"": {}}}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "layer_statistics": {
        "": lambda s: {"tag": s.tag, "statistic": "std"},
        "base64": lambda s: {"tag": s.tag, "statistic": "std", "format": "base64"},
        "name": lambda s: {"tag": s.tag, "statistic": "std", "name": s.names[0]},
        "parameters": lambda s: {"tag": s.tag, "statistic": "grad_norm"},
        "parameters_base64": lambda s: {"tag": s.tag, "statistic": "grad_norm", "format": "base64"},
        "weight_norm": lambda s: {"tag": s.tag, "statistic": "weight_norm"},
        "default": lambda s: {"tag": s.tag},
    },
    "layer_statistics_spectrum": {
        "": lambda s: {"tag": s.tag, "layer": SPECTRUM_LAYER},
        "base64": lambda s: {"tag": s.tag, "layer": SPECTRUM_LAYER, "format": "base64"},
    },
}


def _matrix(values) -> np.ndarray:
    from tests import damaged_fuzz as fuzz

    if isinstance(values, dict):
        return fuzz.slot(values).astype(np.float64)
    return np.array([[fuzz.number(v) for v in row] for row in values], dtype=np.float64)


def possible_numbers(route: str, body: dict) -> list[str]:
    """Fractions beyond [0, 1], negative norms and eigenvalues served without an error."""
    problems = []
    tables: list[tuple[str, np.ndarray]] = []
    if route == "layer_statistics" and "values" in body:
        tables.append((body.get("statistic", ""), _matrix(body["values"]).reshape(-1)))
    elif route == "layer_statistics_step" and body.get("error") is None:
        for names, key in (
            ("activation_statistics", "activations"),
            ("parameter_statistics", "parameter_values"),
        ):
            matrix = _matrix(body.get(key) or [])
            for k, name in enumerate(body.get(names, [])):
                tables.append((name, matrix[:, k] if matrix.size else matrix))
    elif route == "layer_statistics_spectrum" and "eigenvalues" in body:
        eigen = body["eigenvalues"]
        flat = (
            _matrix(eigen).reshape(-1)
            if isinstance(eigen, dict)
            else np.array([v for row in eigen for v in row], dtype=np.float64)
        )
        tables.append(("eigenvalue", flat))
    for name, values in tables:
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        if name in (*FRACTIONS, "saturation") and (finite.min() < 0 or finite.max() > 1):
            problems.append(f"a {name} outside [0, 1] served without an error")
        elif name != "mean" and finite.min() < 0:
            problems.append(f"a negative {name} served without an error")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    """The step route's numbers against the step's reference."""
    from tests import damaged_fuzz as fuzz

    if route != "layer_statistics_step":
        return []
    ref = reference(series.tag, step)
    problems = []
    if body.get("layers") != list(LAYER_NAMES) or body.get("parameters") != list(PARAMETER_NAMES):
        return [f"rows {body.get('layers')} / {body.get('parameters')}, written {LAYER_NAMES}"]
    for key, want in (("activations", ref.activations), ("parameter_values", ref.parameters)):
        got = _matrix(body[key])
        if got.shape != want.shape or (np.isnan(got) != np.isnan(want)).any():
            problems.append(
                f"{key}: NaN at {np.argwhere(np.isnan(got)).tolist()}, written "
                f"{np.argwhere(np.isnan(want)).tolist()}"
            )
            continue
        finite = ~np.isnan(want)
        found = fuzz.close(got[finite], want[finite], 4 * fuzz.FLOAT32_EPS * np.nanmax(want))
        if found:
            problems.append(f"{key}: {found}")
    if body.get("without_gradient") != [PARAMETER_NAMES[WITHOUT_GRADIENT]]:
        problems.append(
            f"without_gradient {body.get('without_gradient')}, written "
            f"{[PARAMETER_NAMES[WITHOUT_GRADIENT]]}"
        )
    for key, want in (
        ("counts", ref.counts),
        ("channels", ref.channels),
        ("dead_channels", ref.dead_channels),
        ("covariance_samples", ref.samples),
        ("eigenvalue_counts", [e.size for e in ref.eigenvalues]),
    ):
        if body.get(key) != list(np.asarray(want).tolist()):
            problems.append(f"{key} {body.get(key)}, written {list(want)}")
    return problems


def check_series(series, request, body: dict, problem) -> None:
    from tests import damaged_fuzz as fuzz

    if request.route == "layer_statistics":
        if request.variant in ("parameters", "parameters_base64"):
            _check_gradient_norms(series, body, problem)
            return
        if request.variant == "weight_norm":  # measured for every parameter
            column = PARAMETER_STATISTICS.index("weight_norm")
            good = {s: reference(series.tag, s).parameters[:, column] for s in series.good}
            series = dataclasses.replace(series, good=good, names=PARAMETER_NAMES)
        else:
            column = ACTIVATION_STATISTICS.index("std")  # the default statistic too
            good = {s: values[:, column] for s, values in series.good.items()}
            series = dataclasses.replace(series, good=good)
        fuzz.check_rows(series, request, body, problem)
        return
    # layer_statistics_spectrum: the good steps' eigenvalues of SPECTRUM_LAYER.
    good = sorted(series.good)
    if not _good_steps_and_warnings(series, body, problem):
        return
    row = LAYER_NAMES.index(SPECTRUM_LAYER)
    want = np.stack([reference(series.tag, s).eigenvalues[row] for s in good])
    eigen = body["eigenvalues"]
    got = _matrix(eigen) if isinstance(eigen, dict) else np.array(eigen, dtype=np.float64)
    found = fuzz.close(got, want, 4 * fuzz.FLOAT32_EPS * float(np.max(want)))
    if found:
        problem(f"eigenvalues: {found}")


def _good_steps_and_warnings(series, body: dict, problem) -> bool:
    """The body serves the good steps, and its warnings name each damaged one."""
    from tests import damaged_fuzz as fuzz

    good = sorted(series.good)
    if body.get("steps") != good:
        problem(f"steps {body.get('steps')}, the good ones are {good}")
        return False
    said = " ".join(body.get("warnings", []))
    for step in series.damaged:
        if not fuzz._names_step(said, step):
            problem(f"no warning names the damaged step {step}: warnings {body.get('warnings')}")
    return True


def _check_gradient_norms(series, body: dict, problem) -> None:
    """The grad_norm table: the written norms, and the parameter without a gradient not
    measured (null in json; in base64's `not_measured`), never a non-finite value."""
    from tests import damaged_fuzz as fuzz

    if not _good_steps_and_warnings(series, body, problem):
        return
    if body.get("names") != list(PARAMETER_NAMES):
        problem(f"names {body.get('names')}, written {list(PARAMETER_NAMES)}")
        return
    good = sorted(series.good)
    want = np.array([reference(series.tag, s).parameters[:, 0] for s in good], np.float64)
    not_measured = np.zeros(want.shape, dtype=bool)
    not_measured[:, WITHOUT_GRADIENT] = True
    values = body["values"]
    if isinstance(values, dict):
        said = body.get("not_measured")
        if said != np.argwhere(not_measured).tolist():
            problem(f"not_measured {said}, the parameter without a gradient is {WITHOUT_GRADIENT}")
    elif [[v is None for v in row] for row in values] != not_measured.tolist():
        problem(f"nulls {values}: only the parameter without a gradient is not measured")
    if body.get("non_finite") != 0:
        problem(f"non_finite {body.get('non_finite')}: no norm written is non-finite")
    matrix = _matrix(values)
    if matrix.shape != want.shape:
        problem(f"values of shape {list(matrix.shape)}, written {list(want.shape)}")
        return
    found = fuzz.close(
        matrix[~not_measured], want[~not_measured], 4 * fuzz.FLOAT32_EPS * np.nanmax(want)
    )
    if found:
        problem(found)
