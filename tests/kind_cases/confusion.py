"""Confusion matrices' test cases (see tests/kind_cases/__init__.py): a tensor kind.

A good step is a 4-class matrix of 60 seeded labels and predictions (the
prediction right with probability 0.6, else a uniform class), built by the
public builder with class names; what a reader must serve is the counts,
counted here with numpy (`np.add.at`), independently of the writer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from tests.damaged_logs import Good, float_tensor, mutated, rng, string_vector

MAIN_ARRAY = "counts"
CLASS_NAMES = ("cat", "dog", "bird", "frog")
NAMES = CLASS_NAMES
SAMPLES = 60


def labels_and_predictions(tag: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded labels [N] and predictions [N], int64."""
    generator = rng(tag, step)
    size = len(CLASS_NAMES)
    labels = generator.integers(0, size, SAMPLES)
    right = generator.random(SAMPLES) < 0.6
    predictions = np.where(right, labels, generator.integers(0, size, SAMPLES))
    return labels, predictions


def reference_counts(labels: np.ndarray, predictions: np.ndarray, size: int) -> np.ndarray:
    counts = np.zeros((size, size), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def good(tag: str, step: int, cross: bool = False) -> Good:
    from deepscope.writer.confusion import confusion_matrix_pb

    labels, predictions = labels_and_predictions(tag, step)
    summary = confusion_matrix_pb(tag, labels, predictions, list(CLASS_NAMES), on="validation")
    return Good(summary, reference_counts(labels, predictions, len(CLASS_NAMES)))


def damages() -> dict[str, Callable]:
    def negative(step):
        counts = arrays.decode_array(step.counts).copy()
        counts[1, 2] = -3
        step.counts.CopyFrom(arrays.encode_array(counts))
        step.samples = int(counts.sum())

    def samples_wrong(step):
        step.samples += 1

    def too_few_classes(step):
        counts = arrays.decode_array(step.counts)[:3, :3].copy()
        step.counts.CopyFrom(arrays.encode_array(counts))
        step.samples = int(counts.sum())

    def not_square(step):
        counts = arrays.decode_array(step.counts)[:, :3].copy()
        step.counts.CopyFrom(arrays.encode_array(counts))
        step.samples = int(counts.sum())

    def float_counts(step):
        counts = arrays.decode_array(step.counts).astype(np.float32)
        step.counts.CopyFrom(arrays.encode_array(counts))

    def negative_seconds(step):
        step.seconds = -1.0

    return {
        "negative_count": mutated("confusion", negative),
        "samples_not_the_sum": mutated("confusion", samples_wrong),
        "too_few_classes": mutated("confusion", too_few_classes),
        "not_square": mutated("confusion", not_square),
        "float_counts": mutated("confusion", float_counts),
        "negative_seconds": mutated("confusion", negative_seconds),
        "float_tensor": float_tensor("confusion"),
        "string_vector": string_vector("confusion"),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {
    "confusion": {"": {}, "top": {"top": 2}},
}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "confusion_series": {
        "": lambda s: {"tag": s.tag},
        "name": lambda s: {"tag": s.tag, "name": "dog"},
    },
}


def _finite(values) -> np.ndarray:
    from tests import damaged_fuzz as fuzz

    return np.array([fuzz.number(v) for v in values], dtype=np.float64)


def possible_numbers(route: str, body: dict) -> list[str]:
    problems = []
    if route == "confusion" and body.get("counts") is not None:
        counts = np.asarray(body["counts"])
        if counts.size and counts.min() < 0:
            problems.append("a negative count served")
        for entry in body.get("per_class", []):
            for field in ("precision", "recall", "f1"):
                value = _finite([entry[field]])[0]
                if not np.isnan(value) and not 0.0 <= value <= 1.0:
                    problems.append(f"{field} {value} of class {entry['name']!r} outside [0, 1]")
    if route == "confusion_series" and "accuracy" in body:
        values = _finite(body["accuracy"])
        if np.any((values[~np.isnan(values)] < 0) | (values[~np.isnan(values)] > 1)):
            problems.append("an accuracy outside [0, 1] served")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    want = series.good[step]
    got = np.asarray(body.get("counts"))
    if got.shape != want.shape or np.any(got != want):
        return [f"counts {got.tolist()}, written {want.tolist()}"]
    accuracy = np.trace(want) / want.sum()
    if abs(_finite([body["accuracy"]])[0] - accuracy) > 4 * np.finfo(np.float64).eps:
        return [f"accuracy {body['accuracy']}, the counts give {accuracy}"]
    return []


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
    want = np.array([np.trace(series.good[s]) / series.good[s].sum() for s in good])
    found = fuzz.close(_finite(body["accuracy"]), want, 4 * float(np.finfo(np.float64).eps))
    if found:
        problem(f"accuracy: {found}")
    classes = ["dog"] if request.variant == "name" else list(CLASS_NAMES)
    if body["classes"] != classes:
        problem(f"classes {body['classes']}, asked {classes}")
        return
    columns = [CLASS_NAMES.index(c) for c in classes]
    recall = np.array(
        [np.diag(series.good[s])[columns] / series.good[s].sum(axis=1)[columns] for s in good]
    )
    got = np.array([[fuzz.number(v) for v in row] for row in body["recall"]], dtype=np.float64)
    found = fuzz.close(got, recall, 4 * float(np.finfo(np.float64).eps))
    if found:
        problem(f"recall: {found}")
