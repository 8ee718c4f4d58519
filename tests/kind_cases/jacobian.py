"""Jacobian spectra's test cases (see tests/kind_cases/__init__.py): a tensor kind.

A good step holds two maps on three probe samples: the whole network ("",
8 → 3, its whole spectrum: 3 values) and "fc1" (16 → 16, the top 4 of a
square map). The singular values are numpy's SVD (float64) of seeded random
matrices; what a reader must serve is that array, [maps, samples, values],
NaN-padded.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from tests.damaged_logs import Good, float_tensor, mutated, rng, string_vector

MAIN_ARRAY = "singular_values"
MAPS = ("", "fc1")
SAMPLES = 3
_SHAPES = {"": (3, 8), "fc1": (16, 16)}  # (output dim m, input dim n)
_TOP = {"": None, "fc1": 4}  # None: the whole spectrum


def spectra(tag: str, step: int) -> dict[str, types.SimpleNamespace]:
    """Map → a JacobianSpectrum-like record of numpy's SVD of seeded matrices."""
    generator = rng(tag, step)
    found = {}
    for name in MAPS:
        m, n = _SHAPES[name]
        matrices = generator.standard_normal((SAMPLES, m, n))
        sv = np.linalg.svd(matrices, compute_uv=False)  # [S, min(m, n)] float64, descending
        top = _TOP[name]
        mean_squared = (sv**2).mean(axis=1)
        log_det = np.log(sv).sum(axis=1) if m == n else np.full(SAMPLES, np.nan)
        found[name] = types.SimpleNamespace(
            input_dim=n,
            output_dim=m,
            singular_values=sv if top is None else sv[:, :top],
            full=top is None,
            mean_squared=mean_squared,
            log_abs_det=log_det,
            seconds=0.01,
        )
    return found


def reference(found: dict) -> np.ndarray:
    """float64 [maps, samples, values] NaN-padded, as a reader serves it."""
    width = max(s.singular_values.shape[1] for s in found.values())
    out = np.full((len(MAPS), SAMPLES, width), np.nan)
    for i, name in enumerate(MAPS):
        sv = found[name].singular_values
        out[i, :, : sv.shape[1]] = sv
    return out


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.jacobian import jacobian_pb

    found = spectra(tag, step)
    return Good(jacobian_pb(tag, found, output="logits"), reference(found))


def damages() -> dict[str, Callable]:
    def repeated_map(step):
        step.maps[:] = ["fc1", "fc1"]

    def negative(step):
        values = arrays.decode_array(step.singular_values).copy()
        values[1, 0, 0] = -1.0
        step.singular_values.CopyFrom(arrays.encode_array(values))

    def rising(step):
        values = arrays.decode_array(step.singular_values).copy()
        values[1, 0, :] = values[1, 0, ::-1]
        step.singular_values.CopyFrom(arrays.encode_array(values))

    def too_many(step):  # 5 values for the 8 → 3 map, which has 3
        values = np.ones((2, SAMPLES, 5), np.float32)
        step.singular_values.CopyFrom(arrays.encode_array(values))
        step.mean_squared.CopyFrom(arrays.encode_array(np.ones((2, SAMPLES), np.float32)))

    def mean_squared_shape(step):
        step.mean_squared.CopyFrom(arrays.encode_array(np.ones((2, 2), np.float32)))

    def dims_zero(step):
        step.dims.CopyFrom(arrays.encode_array(np.zeros((2, 2), np.int64)))

    def errors_count(step):
        step.errors[:] = ["", "", ""]

    def map_count(step):
        step.maps[:] = ["", "fc1", "fc2"]

    return {
        "repeated_map": mutated("jacobian", repeated_map),
        "negative_singular_value": mutated("jacobian", negative),
        "rising_singular_values": mutated("jacobian", rising),
        "more_values_than_dims": mutated("jacobian", too_many),
        "mean_squared_shape": mutated("jacobian", mean_squared_shape),
        "dims_zero": mutated("jacobian", dims_zero),
        "errors_count": mutated("jacobian", errors_count),
        "map_count": mutated("jacobian", map_count),
        "float_tensor": float_tensor("jacobian"),
        "string_vector": string_vector("jacobian"),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {"jacobian_spectrum": {"": {}}}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "jacobian": {
        "": lambda s: {"tag": s.tag},
        "name": lambda s: {"tag": s.tag, "name": "fc1"},
    },
}


def _matrix(value) -> np.ndarray:
    from tests import damaged_fuzz as fuzz

    return np.array(
        [[np.nan if v is None else fuzz.number(v) for v in row] for row in value],
        dtype=np.float64,
    )


def possible_numbers(route: str, body: dict) -> list[str]:
    problems = []
    if route == "jacobian_spectrum" and body.get("maps"):
        for entry in body["maps"]:
            if entry.get("error"):
                continue
            values = _matrix(entry["singular_values"])
            if np.any(values[~np.isnan(values)] < 0):
                problems.append(f"a negative singular value of map {entry['name']!r} served")
    if route == "jacobian" and "sigma_max" in body:
        values = _matrix(body["sigma_max"]["mean"])
        if np.any(values[~np.isnan(values)] < 0):
            problems.append("a negative mean σ_max served")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    want = series.good[step]
    problems = []
    names = [entry["name"] for entry in body.get("maps", [])]
    if names != list(MAPS):
        return [f"maps {names}, written {list(MAPS)}"]
    for i, entry in enumerate(body["maps"]):
        got = _matrix(entry["singular_values"])
        width = int((~np.isnan(want[i][0])).sum())  # the map's values; NaN padding after
        if got.shape[1] < width or np.any(~np.isnan(got[:, width:])):
            problems.append(f"map {entry['name']!r}: {got.shape[1]} values, written {width}")
            continue
        got, expected = got[:, :width], want[i][:, :width]
        found = fuzz.close(got, expected, 8 * fuzz.FLOAT32_EPS * float(np.nanmax(want)))
        if found:
            problems.append(f"map {entry['name']!r}: {found}")
    return problems


def check_series(series, request, body: dict, problem) -> None:
    from tests import damaged_fuzz as fuzz

    good = sorted(series.good)
    if body["steps"] != good:
        problem(
            f"steps {body['steps']}, the good ones are {good} (damaged: {list(series.damaged)})"
        )
        return
    said = " ".join(body.get("warnings", []))
    for step in series.damaged:
        if not fuzz._names_step(said, step):
            problem(f"no warning names the damaged step {step}: warnings {body.get('warnings')}")
    for found in possible_numbers(request.route, body):
        problem(found)
    names = ["fc1"] if request.variant == "name" else list(MAPS)
    if body["maps"] != names:
        problem(f"maps {body['maps']}, written {names}")
        return
    columns = [MAPS.index(name) for name in names]
    want = np.array([series.good[s][columns, :, 0].mean(axis=1) for s in good])
    found = fuzz.close(
        _matrix(body["sigma_max"]["mean"]), want, 8 * fuzz.FLOAT32_EPS * float(want.max())
    )
    if found:
        problem(f"σ_max means: {found}")
