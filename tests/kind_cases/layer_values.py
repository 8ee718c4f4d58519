"""Layer values' test cases (see tests/kind_cases/__init__.py): a tensor kind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from tests.damaged_logs import (
    LAYER_NAMES,
    Good,
    float_tensor,
    mutated,
    rng,
    set_values,
    string_vector,
)

MAIN_ARRAY = "values"
NAMES = LAYER_NAMES


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.layer_values import layer_values_pb

    values = rng(tag, step).lognormal(0.0, 1.0, size=len(LAYER_NAMES)).astype(np.float32)
    summary = layer_values_pb(tag, dict(zip(LAYER_NAMES, values.tolist())), quantity="norm")
    return Good(summary, values)


def damages() -> dict[str, Callable]:
    def values_count(step):
        step.values.CopyFrom(arrays.encode_array(np.ones(len(LAYER_NAMES) + 1, np.float32)))

    def duplicate_names(step):
        step.names[:] = [LAYER_NAMES[0]] * len(LAYER_NAMES)

    return {
        "not_measured_out_of_range": mutated(
            "layer_values", set_values("not_measured", [len(LAYER_NAMES) + 2])
        ),
        "values_count_mismatch": mutated("layer_values", values_count),
        "duplicate_names": mutated("layer_values", duplicate_names),
        "float_tensor": float_tensor("layer_values"),
        "string_vector": string_vector("layer_values"),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "layer_values": {
        "": lambda s: {"tag": s.tag},
        "base64": lambda s: {"tag": s.tag, "format": "base64"},
    },
}


def check_series(series, request, body: dict, problem) -> None:
    from tests import damaged_fuzz as fuzz

    fuzz.check_rows(series, request, body, problem)
