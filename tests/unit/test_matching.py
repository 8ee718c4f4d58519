"""Semi- and bipartite matching against brute force; redundant_fraction by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deepscope.analysis.matching import (
    bipartite_matching,
    match_channels,
    redundant_fraction,
    semi_matching,
)


def _brute_force_bipartite(matrix: np.ndarray) -> tuple[float, dict[int, int]]:
    """Best Σρ over every one-to-one pairing of the smaller side, and its pairs row → col."""
    rows, cols = matrix.shape
    best, pairs = -np.inf, {}
    if rows <= cols:
        for chosen in itertools.permutations(range(cols), rows):
            total = sum(matrix[i, j] for i, j in enumerate(chosen))
            if total > best:
                best, pairs = total, dict(enumerate(chosen))
    else:
        for chosen in itertools.permutations(range(rows), cols):
            total = sum(matrix[i, j] for j, i in enumerate(chosen))
            if total > best:
                best, pairs = total, {i: j for j, i in enumerate(chosen)}
    return best, pairs


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (6, 6), (3, 6), (6, 4), (2, 5)])
def test_bipartite_matches_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        matrix = rng.uniform(-1, 1, size=shape)
        best, pairs = _brute_force_bipartite(matrix)
        rows, cols, corr = bipartite_matching(matrix)
        assert len(rows) == min(shape)
        assert dict(zip(rows.tolist(), cols.tolist())) == pairs
        assert corr.sum() == pytest.approx(best)
        np.testing.assert_array_equal(corr, matrix[rows, cols])
        assert len(set(cols.tolist())) == len(cols)  # one-to-one


def test_semi_matching_is_the_best_column_of_each_row():
    rng = np.random.default_rng(0)
    matrix = rng.uniform(-1, 1, size=(5, 7))
    cols, corr = semi_matching(matrix)
    for i in range(5):
        j = max(range(7), key=lambda k: matrix[i, k])
        assert cols[i] == j and corr[i] == matrix[i, j]


def test_semi_matching_maximizes_signed_correlation_and_may_repeat_columns():
    matrix = np.array([[0.9, -0.95, 0.1], [0.8, 0.2, -0.99], [0.1, 0.3, 0.2]])
    cols, corr = semi_matching(matrix)
    assert cols.tolist() == [0, 0, 1]
    rows, bcols, bcorr = bipartite_matching(matrix)
    # one-to-one: row 0 keeps column 0, row 1 then does best with column 1
    assert dict(zip(rows.tolist(), bcols.tolist())) == {0: 0, 1: 1, 2: 2}
    assert bcorr.tolist() == [0.9, 0.2, 0.2]


def test_summary_and_sorted_curves():
    matrix = np.array([[0.2, 0.9], [0.7, 0.1], [0.3, 0.4]])
    result = match_channels(matrix)
    assert result.semi_corr.tolist() == [0.9, 0.7, 0.4]
    assert result.semi_mean == pytest.approx((0.9 + 0.7 + 0.4) / 3)
    assert sorted(zip(result.bipartite_rows.tolist(), result.bipartite_cols.tolist())) == [
        (0, 1),
        (1, 0),
    ]
    assert result.bipartite_mean == pytest.approx(0.8)
    assert result.semi_sorted.tolist() == [0.9, 0.7, 0.4]
    assert result.bipartite_sorted.tolist() == [0.9, 0.7]


def test_redundant_fraction_counts_channels_with_a_near_twin():
    within = np.eye(5)
    within[0, 1] = within[1, 0] = 0.95
    within[2, 3] = within[3, 2] = -0.91  # anti-correlated twins are redundant too
    within[2, 4] = within[4, 2] = 0.9  # exactly 0.9 is not above the threshold
    assert redundant_fraction(within) == pytest.approx(4 / 5)
    assert redundant_fraction(np.eye(3)) == pytest.approx(0.0, abs=1e-12)  # the diagonal is ignored
    assert redundant_fraction(within, threshold=0.5) == pytest.approx(1.0, abs=1e-12)


def test_bad_matrices_raise():
    with pytest.raises(ValueError, match="NaN or Inf"):
        match_channels(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="2-d"):
        semi_matching(np.zeros(3))
    with pytest.raises(ValueError, match="2-d"):
        bipartite_matching(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="square"):
        redundant_fraction(np.zeros((2, 3)))
