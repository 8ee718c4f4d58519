"""Update ratios' test cases (see tests/kind_cases/__init__.py): a tensor kind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from tests.damaged_logs import (
    DAMAGED_STEP,
    PARAMETER_NAMES,
    WALL_TIME,
    Good,
    float_tensor,
    mutated,
    rng,
    set_values,
    string_vector,
)

MAIN_ARRAY = "ratios"
NAMES = PARAMETER_NAMES


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.update_ratios import update_ratios_pb

    values = rng(tag, step).lognormal(np.log(1e-3), 0.5, size=len(PARAMETER_NAMES))
    values = values.astype(np.float32)
    summary = update_ratios_pb(tag, dict(zip(PARAMETER_NAMES, values.tolist())))
    return Good(summary, values)


def damages() -> dict[str, Callable]:
    p = len(PARAMETER_NAMES)

    def wrong_width(step):  # one value more than the metadata's names, no names of its own
        step.ratios.CopyFrom(arrays.encode_array(np.full(p + 1, 1e-3, np.float32)))

    def block_rows(step):  # a block of 2 rows with 1 wall time
        step.ratios.CopyFrom(arrays.encode_array(np.full((2, p), 1e-3, np.float32)))
        step.steps[:] = [DAMAGED_STEP - 1, DAMAGED_STEP]
        step.wall_times[:] = [WALL_TIME + DAMAGED_STEP]

    return {
        "no_update_out_of_range": mutated("update_ratios", set_values("no_update", [p + 4])),
        "zero_weight_out_of_range": mutated("update_ratios", set_values("zero_weight", [p])),
        "float_tensor": float_tensor("update_ratios"),
        "string_vector": string_vector("update_ratios"),
        "wrong_width": mutated("update_ratios", wrong_width),
        "block_rows_mismatch": mutated("update_ratios", block_rows),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "update_ratios": {
        "": lambda s: {"tag": s.tag},
        "base64": lambda s: {"tag": s.tag, "format": "base64"},
        "name": lambda s: {"tag": s.tag, "name": s.names[0] if s.names else "x"},
    },
}


def possible_numbers(route: str, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    problems = []
    if route in ("update_ratios",) and "values" in body:
        values = body["values"]
        values = (
            fuzz.slot(values).astype(np.float64)
            if isinstance(values, dict)
            else np.array([[fuzz.number(v) for v in row] for row in values], dtype=np.float64)
        )
        if np.any(values[np.isfinite(values)] < 0):
            problems.append("a negative update ratio ‖ΔW‖/‖W‖ served without a warning")
    return problems


def check_series(series, request, body: dict, problem) -> None:
    from tests import damaged_fuzz as fuzz

    fuzz.check_rows(series, request, body, problem)
