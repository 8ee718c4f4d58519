"""Filters' test cases (see tests/kind_cases/__init__.py): a blob kind (conv weights here)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.damaged_logs import Good, mutated, rng

MAIN_ARRAY = "values"
# A 2 → 4 conv with 3×3 kernels: 8 grayscale tiles in (out, in) order.
SHAPE = (4, 2, 3, 3)


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.filters import filters_pb

    weight = rng(tag, step).standard_normal(SHAPE).astype(np.float32)
    summary = filters_pb(tag, weight, layer="conv")
    # The tiles a reader serves: (out, in) pairs out-major, numpy's reshape.
    return Good(summary, weight.reshape(SHAPE[0] * SHAPE[1], SHAPE[2], SHAPE[3]))


def damages() -> dict[str, Callable]:
    def more_than_total(step):
        step.total = 2

    def rgb_without_three(step):
        step.rgb = True

    def integer_values(step):
        step.values.CopyFrom(arrays.encode_array(np.zeros(SHAPE, np.int32)))

    def three_d(step):
        step.values.CopyFrom(arrays.encode_array(np.zeros(SHAPE[1:], np.float16)))

    def non_finite_count(step):
        step.non_finite = 5

    def negative_sample(step):
        step.sample = -1

    return {
        "stored_more_than_total": mutated("filters", more_than_total),
        "rgb_without_three_inputs": mutated("filters", rgb_without_three),
        "integer_values": mutated("filters", integer_values),
        "weights_not_4d": mutated("filters", three_d),
        "non_finite_count_mismatch": mutated("filters", non_finite_count),
        "negative_sample": mutated("filters", negative_sample),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {
    "filters": {"": {}, "page": {"offset": "2", "limit": "3"}, "last": {"offset": "7"}},
}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "filters_steps": {"": lambda s: {"tag": s.tag}},
}


def possible_numbers(route: str, body: dict) -> list[str]:
    problems = []
    if route == "filters" and body.get("values") is not None:
        if body["kept"] > body["total"]:
            problems.append(f"{body['kept']} filters stored of {body['total']} served")
        for tile_range in body["tile_ranges"]:
            if tile_range is not None and tile_range[0] > tile_range[1]:
                problems.append(f"a tile range {tile_range} with min > max")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    want = series.good[step]
    found = None
    if route == "filters":
        found = fuzz.close(
            fuzz.slot(body["values"]),
            want[body["offset"] : body["offset"] + body["count"]],
            fuzz.FLOAT16_EPS * float(np.abs(want).max()),
        )
    return [] if found is None else [found]


def example() -> tuple[pb.FiltersInfo, pb.FiltersStep]:
    """A good step for tests/unit/test_blob_steps.py."""
    info = pb.FiltersInfo(source=pb.FILTERS_SOURCE_WEIGHTS, layer="conv")
    step = pb.FiltersStep(values=arrays.encode_array(np.ones((2, 1, 3, 3), np.float16)), total=2)
    return info, step
