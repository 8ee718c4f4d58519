"""Confusion matrices and the per-class metrics computed from one: pure numpy functions.

A confusion matrix of C classes is counts[i, j] = the samples of true class i
predicted as class j (rows: true classes, columns: predicted ones), the
layout of `sklearn.metrics.confusion_matrix`. Everything else follows from
the counts, so the writer stores only them and the plugin computes the rest
(numpy only: this module imports neither torch nor TensorBoard, and both the
writer and the plugin use it). Counts are sums, so matrices of batches or of
a distributed run's ranks add up (`accumulate`).

From the matrix, per class c:

- support = Σ_j counts[c, j] (true samples of c), predicted = Σ_i counts[i, c];
- precision = counts[c, c] / predicted, recall = counts[c, c] / support,
  F1 = 2·precision·recall / (precision + recall) = 2·tp / (support + predicted);

and accuracy = trace / total, the macro averages (the unweighted mean over
classes) and the weighted averages (weighted by support), as
`sklearn.metrics.precision_recall_fscore_support` computes them.

Zero division: a precision with no predictions of the class, a recall with no
true samples of it, an F1 with neither, are undefined. They are NaN here
(sklearn's `zero_division=np.nan`), so an undefined value is never mistaken
for a measured 0, and the averages leave them out (as sklearn does with NaN);
an average over no defined value is NaN. Accuracy of an empty matrix is NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def _labels_vector(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{what} must be one class index per sample (1-d), got shape {list(array.shape)}"
        )
    if array.size and not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)
    ):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
            raise ValueError(f"{what} must be integer class indices, got dtype {array.dtype}")
        if np.any(array != np.round(array)):
            raise ValueError(f"{what} must be integer class indices, got non-integer values")
    return array.astype(np.int64)


def confusion_counts(labels, predictions, num_classes: int) -> np.ndarray:
    """The C × C counts matrix (int64) of class indices: counts[i, j] = #(label i, predicted j).

    Args:
      labels, predictions: N class indices each (1-d integer arrays, or floats
        holding integers), each in [0, num_classes).
      num_classes: C >= 1.

    Raises:
      ValueError: lengths differ, an index is out of [0, C), C < 1, or the
        values are not integer class indices (the message says which).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    labels = _labels_vector(labels, "labels")
    predictions = _labels_vector(predictions, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have one entry per sample each: got {labels.size} "
            f"labels and {predictions.size} predictions"
        )
    for what, values in (("labels", labels), ("predictions", predictions)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{what}[{first}] = {int(values[first])} is out of range for {num_classes} "
                f"classes (class indices are 0..{num_classes - 1}); pass num_classes= or "
                "class_names= covering every class"
            )
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accumulate(total: np.ndarray | None, counts: np.ndarray) -> np.ndarray:
    """`total + counts` (int64), `counts` when `total` is None: matrices of batches add up."""
    counts = np.asarray(counts, dtype=np.int64)
    if total is None:
        return counts.copy()
    if total.shape != counts.shape:
        raise ValueError(f"cannot add a {list(counts.shape)} matrix to a {list(total.shape)} one")
    return total + counts


@dataclasses.dataclass(frozen=True)
class ConfusionMetrics:
    """What a confusion matrix says, per class (float64 [C], NaN where undefined) and overall.

    support: true samples per class (int64 [C]); predicted: predictions per
    class (int64 [C]); correct: the diagonal (int64 [C]). accuracy: trace /
    total; macro_*: unweighted means over the classes where defined;
    weighted_*: means weighted by support over the classes where defined.
    """

    support: np.ndarray
    predicted: np.ndarray
    correct: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    total: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    defined = ~np.isnan(values)
    if weights is not None:
        defined &= weights > 0
    if not defined.any():
        return float("nan")
    if weights is None:
        return float(values[defined].mean())
    return float(np.average(values[defined], weights=weights[defined]))


def check_counts(counts) -> np.ndarray:
    """`counts` as an int64 C × C matrix of non-negative counts; ValueError otherwise."""
    array = np.asarray(counts)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] < 1:
        raise ValueError(f"a confusion matrix is C x C (C >= 1), got shape {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a confusion matrix holds integer counts, got dtype {array.dtype}")
    if np.any(array < 0):
        raise ValueError("a confusion matrix holds non-negative counts, got a negative one")
    return array.astype(np.int64)


def metrics(counts) -> ConfusionMetrics:
    """Per-class precision, recall, F1 and support, accuracy and averages of a counts matrix.

    Matches `sklearn.metrics.precision_recall_fscore_support(..., zero_division=np.nan)`
    (average=None, "macro", "weighted") and `accuracy_score`; undefined values
    are NaN (module doc).
    """
    counts = check_counts(counts)
    correct = np.diagonal(counts).astype(np.int64)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    total = int(support.sum())
    tp = correct.astype(np.float64)
    precision = _divide(tp, predicted.astype(np.float64))
    recall = _divide(tp, support.astype(np.float64))
    f1 = _divide(2.0 * tp, (support + predicted).astype(np.float64))
    weights = support.astype(np.float64)
    return ConfusionMetrics(
        support=support,
        predicted=predicted,
        correct=correct,
        precision=precision,
        recall=recall,
        f1=f1,
        total=total,
        accuracy=float(correct.sum() / total) if total else float("nan"),
        macro_precision=_mean(precision),
        macro_recall=_mean(recall),
        macro_f1=_mean(f1),
        weighted_precision=_mean(precision, weights),
        weighted_recall=_mean(recall, weights),
        weighted_f1=_mean(f1, weights),
    )


@dataclasses.dataclass(frozen=True)
class ConfusedPair:
    """One off-diagonal cell: `count` samples of true class `true` predicted as `predicted`;
    `fraction` of the true class's samples (its row)."""

    true: int
    predicted: int
    count: int
    fraction: float


def most_confused(counts, k: int = 10) -> list[ConfusedPair]:
    """The k largest off-diagonal cells (non-zero only), largest count first.

    Ties are broken by the true class, then the predicted class (ascending),
    so the order is deterministic.
    """
    counts = check_counts(counts)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    size = counts.shape[0]
    off = counts.copy()
    off[np.arange(size), np.arange(size)] = 0
    rows, cols = np.nonzero(off)
    values = off[rows, cols]
    order = np.lexsort((cols, rows, -values))[:k]
    support = counts.sum(axis=1)
    return [
        ConfusedPair(
            true=int(rows[i]),
            predicted=int(cols[i]),
            count=int(values[i]),
            fraction=float(values[i] / support[rows[i]]),
        )
        for i in order
    ]


def normalized(counts, by: str) -> np.ndarray:
    """counts as fractions (float64): by "true" (each row sums to 1: the diagonal is recall),
    "predicted" (each column: the diagonal is precision) or "all"; NaN in an empty row/column.
    """
    counts = check_counts(counts).astype(np.float64)
    if by == "true":
        return _divide(counts, np.broadcast_to(counts.sum(axis=1, keepdims=True), counts.shape))
    if by == "predicted":
        return _divide(counts, np.broadcast_to(counts.sum(axis=0, keepdims=True), counts.shape))
    if by == "all":
        return _divide(counts, np.full(counts.shape, counts.sum()))
    raise ValueError(f"by must be 'true', 'predicted' or 'all', got {by!r}")


def class_labels(class_names: Sequence[str], num_classes: int) -> list[str]:
    """The display names of C classes: `class_names`, or "0".."C-1" when there are none."""
    names = list(class_names)
    return names if names else [str(i) for i in range(num_classes)]
