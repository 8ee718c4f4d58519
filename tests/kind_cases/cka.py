"""Layer × layer CKA's test cases (see tests/kind_cases/__init__.py): a tensor kind.

A good step is a 3 × 4 matrix of seeded values in [0, 1], built by the
public builder; what a reader must serve is
the same values rounded to float32 by numpy, independently of the writer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from tests.damaged_logs import Good, float_tensor, mutated, rng, string_vector

MAIN_ARRAY = "matrix"
LAYERS_A = ("conv1", "conv2", "fc")
LAYERS_B = ("conv1", "conv2", "pool", "fc")
NAMES = LAYERS_A


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.cka import cka_matrix_pb

    values = rng(tag, step).uniform(0.0, 1.0, (len(LAYERS_A), len(LAYERS_B)))
    summary = cka_matrix_pb(
        tag, values, LAYERS_A, LAYERS_B, row_name="seed0", col_name="seed1", samples=64
    )
    return Good(summary, values.astype(np.float32).astype(np.float64))


def damages() -> dict[str, Callable]:
    def beyond_one(step):
        values = arrays.decode_array(step.matrix).copy()
        values[0, 1] = 1.5
        step.matrix.CopyFrom(arrays.encode_array(values))

    def infinite(step):
        values = arrays.decode_array(step.matrix).copy()
        values[1, 0] = np.inf
        step.matrix.CopyFrom(arrays.encode_array(values))

    def too_few_layers(step):
        values = arrays.decode_array(step.matrix)[:, :3].copy()
        step.matrix.CopyFrom(arrays.encode_array(values))

    def float16_matrix(step):
        values = arrays.decode_array(step.matrix).astype(np.float16)
        step.matrix.CopyFrom(arrays.encode_array(values))

    def negative_seconds(step):
        step.seconds = -1.0

    return {
        "cka_out_of_range": mutated("cka", beyond_one),
        "cka_infinite": mutated("cka", infinite),
        "too_few_layers": mutated("cka", too_few_layers),
        "float16_matrix": mutated("cka", float16_matrix),
        "negative_seconds": mutated("cka", negative_seconds),
        "float_tensor": float_tensor("cka"),
        "string_vector": string_vector("cka"),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {"cka": {"": {}}}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "cka_series": {
        "": lambda s: {"tag": s.tag},
        "name": lambda s: {"tag": s.tag, "name": "conv2"},
    },
}


def _matrix(rows) -> np.ndarray:
    from tests import damaged_fuzz as fuzz

    return np.array([[fuzz.number(v) for v in row] for row in rows], dtype=np.float64)


def possible_numbers(route: str, body: dict) -> list[str]:
    matrices = []
    if route == "cka" and body.get("matrix") is not None:
        matrices = [body["matrix"]]
    if route == "cka_series":
        matrices = body.get("matrices", [])
    problems = []
    for rows in matrices:
        values = _matrix(rows)
        finite = values[np.isfinite(values)]
        if np.any(np.isinf(values)) or np.any((finite < 0) | (finite > 1)):
            problems.append("a CKA value outside [0, 1] served without an error")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    found = fuzz.close(_matrix(body["matrix"]), series.good[step], 0.0)
    return [] if found is None else [found]


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
    rows = [1] if request.variant == "name" else list(range(len(LAYERS_A)))
    for step, matrix in zip(good, body["matrices"]):
        found = fuzz.close(_matrix(matrix), series.good[step][rows], 0.0)
        if found:
            problem(f"step {step}: {found}")
