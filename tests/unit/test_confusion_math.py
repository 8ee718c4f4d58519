"""deepscope/analysis/confusion.py against scikit-learn's confusion_matrix,
precision_recall_fscore_support and accuracy_score on seeded labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from deepscope.analysis import confusion as cm

EPS64 = float(np.finfo(np.float64).eps)


def _data(seed: int, size: int, samples: int, missing: int | None = None):
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, size, samples)
    right = generator.random(samples) < 0.5
    predictions = np.where(right, labels, generator.integers(0, size, samples))
    if missing is not None:  # a class never predicted and never true
        labels[labels == missing] = (missing + 1) % size
        predictions[predictions == missing] = (missing + 1) % size
    return labels, predictions


@pytest.mark.parametrize(("seed", "size", "samples"), [(0, 2, 50), (1, 5, 300), (2, 17, 1000)])
def test_counts_are_sklearns_confusion_matrix(seed, size, samples):
    labels, predictions = _data(seed, size, samples)
    got = cm.confusion_counts(labels, predictions, size)
    want = skm.confusion_matrix(labels, predictions, labels=np.arange(size))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("seed", "size", "missing"), [(3, 4, None), (4, 6, 2), (5, 10, 9)])
def test_metrics_are_sklearns_with_nan_zero_division(seed, size, missing):
    labels, predictions = _data(seed, size, 400, missing)
    found = cm.metrics(cm.confusion_counts(labels, predictions, size))
    every = np.arange(size)
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, predictions, labels=every, zero_division=np.nan
    )
    tol = 8 * EPS64
    np.testing.assert_allclose(found.precision, p, rtol=0, atol=tol, equal_nan=True)
    np.testing.assert_allclose(found.recall, r, rtol=0, atol=tol, equal_nan=True)
    np.testing.assert_allclose(found.f1, f, rtol=0, atol=tol, equal_nan=True)
    np.testing.assert_array_equal(found.support, s)
    if missing is not None:
        assert np.isnan(found.precision[missing]) and np.isnan(found.f1[missing])
    assert found.accuracy == pytest.approx(skm.accuracy_score(labels, predictions), abs=tol)
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, predictions, labels=every, average=average, zero_division=np.nan
        )
        assert getattr(found, f"{average}_precision") == pytest.approx(p, abs=tol)
        assert getattr(found, f"{average}_recall") == pytest.approx(r, abs=tol)
        assert getattr(found, f"{average}_f1") == pytest.approx(f, abs=tol)


def test_an_empty_matrix_has_undefined_metrics_not_zeros():
    found = cm.metrics(np.zeros((3, 3), np.int64))
    assert np.isnan(found.accuracy) and np.isnan(found.macro_f1) and found.total == 0
    assert np.all(np.isnan(found.precision))


def test_matrices_of_batches_add_up_to_the_whole():
    labels, predictions = _data(6, 5, 200)
    total = None
    for start in range(0, 200, 64):
        part = cm.confusion_counts(labels[start : start + 64], predictions[start : start + 64], 5)
        total = cm.accumulate(total, part)
    np.testing.assert_array_equal(total, cm.confusion_counts(labels, predictions, 5))


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    counts = np.array([[5, 3, 0], [7, 9, 3], [1, 0, 2]])
    pairs = cm.most_confused(counts, 3)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [(1, 0, 7), (0, 1, 3), (1, 2, 3)]
    assert pairs[0].fraction == pytest.approx(7 / 19, abs=EPS64)
    assert len(cm.most_confused(counts, 100)) == 4  # only non-zero off-diagonal cells


def test_normalised_rows_have_recall_on_the_diagonal_and_columns_precision():
    labels, predictions = _data(7, 4, 300)
    counts = cm.confusion_counts(labels, predictions, 4)
    found = cm.metrics(counts)
    np.testing.assert_allclose(np.diag(cm.normalized(counts, "true")), found.recall, atol=4 * EPS64)
    np.testing.assert_allclose(
        np.diag(cm.normalized(counts, "predicted")), found.precision, atol=4 * EPS64
    )
    np.testing.assert_allclose(
        cm.normalized(counts, "true"),
        skm.confusion_matrix(labels, predictions, normalize="true"),
        atol=4 * EPS64,
    )
    with pytest.raises(ValueError, match="'true', 'predicted' or 'all'"):
        cm.normalized(counts, "rows")


@pytest.mark.parametrize(
    ("labels", "predictions", "size", "message"),
    [
        ([0, 1, 3], [0, 1, 1], 3, r"labels\[2\] = 3 is out of range for 3 classes"),
        ([0, 1], [0, -1], 3, r"predictions\[1\] = -1 is out of range"),
        ([0, 1, 2], [0, 1], 3, "3 labels and 2 predictions"),
        ([0.5, 1], [0, 1], 3, "non-integer"),
        ([[0, 1]], [0, 1], 3, "1-d"),
        ([0], [0], 0, "at least 1"),
    ],
)
def test_bad_input_is_a_clear_error(labels, predictions, size, message):
    with pytest.raises(ValueError, match=message):
        cm.confusion_counts(labels, predictions, size)


def test_counts_must_be_a_square_matrix_of_non_negative_integers():
    for bad, message in (
        (np.ones((2, 3), np.int64), "C x C"),
        (np.ones((2, 2)), "integer counts"),
        (-np.ones((2, 2), np.int64), "non-negative"),
    ):
        with pytest.raises(ValueError, match=message):
            cm.metrics(bad)
