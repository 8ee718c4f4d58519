"""Saliency's test cases (see tests/kind_cases/__init__.py): a blob kind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.damaged_logs import Good, mutated, rng

MAIN_ARRAY = "maps"


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.saliency import saliency_pb

    generator = rng(tag, step)
    inputs = generator.standard_normal((3, 1, 4, 4)).astype(np.float32)
    maps = generator.standard_normal((3, 1, 4, 4)).astype(np.float32)
    summary = saliency_pb(
        tag, inputs, maps, labels=[0, 2, 1], predictions=[0, 1, 1], method="gradient"
    )
    return Good(summary, maps)


def damages() -> dict[str, Callable]:
    def negative_label(step):
        step.labels.CopyFrom(arrays.encode_array(np.array([-3, 0, 1], np.int64)))

    def labels_count(step):
        step.labels.CopyFrom(arrays.encode_array(np.array([0, 1, 2, 1], np.int64)))

    def maps_shape(step):
        step.maps.CopyFrom(arrays.encode_array(np.zeros((3, 1, 4, 5), np.float16)))

    return {
        "label_out_of_range": mutated("saliency", negative_label),
        "labels_count_mismatch": mutated("saliency", labels_count),
        "maps_shape_mismatch": mutated("saliency", maps_shape),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {
    "saliency": {"": {}, "two": {"samples": "0-1"}, "last": {"samples": "2"}},
}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "saliency_steps": {"": lambda s: {"tag": s.tag}},
}


def possible_numbers(route: str, body: dict) -> list[str]:
    problems = []
    if route == "saliency" and "labels" in body and body["labels"] is not None:
        if any(label < 0 for label in body["labels"]):
            problems.append(f"negative class labels {body['labels']} served without an error")
        if len(body["labels"]) != len(body.get("samples", body["labels"])):
            problems.append("labels of another count than the samples served")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    want = series.good[step]
    found = None
    if route == "saliency":
        found = fuzz.close(
            fuzz.slot(body["maps"]),
            want[: len(body["samples"])],
            fuzz.FLOAT16_EPS * float(np.abs(want).max()),
        )
    return [] if found is None else [found]


def example() -> tuple[pb.SaliencyInfo, pb.SaliencyStep]:
    """A good step for tests/unit/test_blob_steps.py."""
    shape = (2, 1, 2, 2)
    info = pb.SaliencyInfo(method="gradient", input_shape=shape[1:])
    step = pb.SaliencyStep(
        inputs=arrays.encode_array(np.zeros(shape, np.float16)),
        maps=arrays.encode_array(np.ones(shape, np.float16)),
        labels=arrays.encode_array(np.array([1, 0], np.int64)),
    )
    return info, step
