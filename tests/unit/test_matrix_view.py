"""The matrix helpers behind the correlation routes, against brute force and planted structure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deepscope.tb_plugin import matrix_view


def _brute_block_means(window: np.ndarray, size: int) -> np.ndarray:
    """Means over blocks of ceil(n / size) positions, by explicit slicing."""
    h, w = window.shape
    bh, bw = -(-h // size), -(-w // size)
    out = np.empty((-(-h // bh), -(-w // bw)))
    for i, j in itertools.product(range(out.shape[0]), range(out.shape[1])):
        out[i, j] = window[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw].astype(np.float64).mean()
    return out


@pytest.mark.parametrize("identity", [False, True], ids=["arange", "None"])
@pytest.mark.parametrize("shape, size", [((300, 300), 64), ((300, 200), 7), ((50, 37), 8)])
def test_block_means_equal_brute_force_including_ragged_last_blocks(shape, size, identity):
    rng = np.random.default_rng(0)
    matrix = rng.uniform(-1, 1, size=shape).astype(np.float32)
    rows, cols = (None, None) if identity else (np.arange(shape[0]), np.arange(shape[1]))
    reduced = matrix_view.reduce_window(matrix, rows, cols, (0, shape[0]), (0, shape[1]), size)
    expected = _brute_block_means(matrix, size)
    assert reduced.values.shape == expected.shape
    assert max(reduced.values.shape) <= size
    np.testing.assert_allclose(reduced.values, expected, rtol=0, atol=1e-6)
    assert reduced.row_edges[0] == 0 and reduced.row_edges[-1] == shape[0]
    assert reduced.block == (-(-shape[0] // size), -(-shape[1] // size))


def test_a_window_that_fits_is_the_exact_permuted_submatrix():
    rng = np.random.default_rng(1)
    matrix = rng.uniform(-1, 1, size=(40, 30)).astype(np.float32)
    row_order, col_order = rng.permutation(40), rng.permutation(30)
    reduced = matrix_view.reduce_window(matrix, row_order, col_order, (5, 17), (3, 29), 64)
    assert reduced.block == (1, 1)
    for p, q in itertools.product(range(12), range(26)):
        assert reduced.values[p, q] == matrix[row_order[5 + p], col_order[3 + q]]
    np.testing.assert_array_equal(reduced.row_edges, np.arange(5, 18))
    plain = matrix_view.reduce_window(matrix, None, None, (5, 17), (3, 29), 64)
    np.testing.assert_array_equal(plain.values, matrix[5:17, 3:29])


def test_a_reduced_window_of_a_permuted_matrix_is_block_means_of_its_positions():
    rng = np.random.default_rng(5)
    matrix = rng.uniform(-1, 1, size=(90, 70)).astype(np.float32)
    row_order, col_order = rng.permutation(90), rng.permutation(70)
    reduced = matrix_view.reduce_window(matrix, row_order, col_order, (10, 85), (0, 70), 10)
    permuted = matrix[np.ix_(row_order[10:85], col_order)]
    np.testing.assert_allclose(reduced.values, _brute_block_means(permuted, 10), atol=1e-6)


def test_clustered_order_makes_planted_groups_contiguous():
    # Three groups of channels driven by three latent signals, shuffled.
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(2000, 3))
    groups = rng.permutation(np.repeat([0, 1, 2], [7, 5, 9]))
    acts = latent[:, groups] + 0.3 * rng.normal(size=(2000, groups.size))
    rho = np.corrcoef(acts, rowvar=False)
    rows, cols = matrix_view.clustered_order(rho, symmetric=True)
    np.testing.assert_array_equal(rows, cols)
    assert sorted(rows.tolist()) == list(range(groups.size))
    labels = groups[rows]
    # Contiguous: the label changes exactly twice along the order.
    assert int(np.count_nonzero(np.diff(labels))) == 2


def test_clustered_order_across_networks_groups_rows_and_columns_by_profile():
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(3000, 2))
    row_groups = rng.permutation(np.repeat([0, 1], [6, 6]))
    col_groups = rng.permutation(np.repeat([0, 1], [4, 5]))
    a = latent[:, row_groups] + 0.3 * rng.normal(size=(3000, 12))
    b = latent[:, col_groups] + 0.3 * rng.normal(size=(3000, 9))
    rho = np.corrcoef(np.concatenate([a, b], axis=1), rowvar=False)[:12, 12:]
    rows, cols = matrix_view.clustered_order(rho, symmetric=False)
    assert sorted(rows.tolist()) == list(range(12)) and sorted(cols.tolist()) == list(range(9))
    assert int(np.count_nonzero(np.diff(row_groups[rows]))) == 1
    assert int(np.count_nonzero(np.diff(col_groups[cols]))) == 1


def test_clustered_order_of_a_tiny_matrix_is_the_identity():
    rows, cols = matrix_view.clustered_order(np.eye(2), symmetric=True)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]


@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4)])
def test_matched_order_puts_every_pair_on_the_diagonal(shape):
    rng = np.random.default_rng(4)
    k = min(shape)
    rows = rng.choice(shape[0], size=k, replace=False)
    cols = rng.choice(shape[1], size=k, replace=False)
    row_order, col_order = matrix_view.matched_order(shape, rows, cols)
    assert sorted(row_order.tolist()) == list(range(shape[0]))
    assert sorted(col_order.tolist()) == list(range(shape[1]))
    pairs = set(zip(rows.tolist(), cols.tolist()))
    assert {(int(row_order[p]), int(col_order[p])) for p in range(k)} == pairs
    if shape[0] <= shape[1]:  # every row matched: rows keep their original order
        assert row_order.tolist() == list(range(shape[0]))


def test_matched_order_refuses_a_matching_that_reuses_a_column():
    with pytest.raises(ValueError, match="at most once"):
        matrix_view.matched_order((3, 3), np.array([0, 1]), np.array([2, 2]))
    with pytest.raises(ValueError, match="out of range"):
        matrix_view.matched_order((3, 3), np.array([0]), np.array([3]))


def _brute_block_max_abs(window: np.ndarray, size: int) -> np.ndarray:
    """Per block (as _brute_block_means): the entry of largest |v|, +x over −x on a tie."""
    h, w = window.shape
    bh, bw = -(-h // size), -(-w // size)
    out = np.empty((-(-h // bh), -(-w // bw)))
    for i, j in itertools.product(range(out.shape[0]), range(out.shape[1])):
        cell = window[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw].reshape(-1)
        largest = max(abs(float(v)) for v in cell)
        out[i, j] = max(float(v) for v in cell if abs(float(v)) == largest)
    return out


@pytest.mark.parametrize("identity", [False, True], ids=["permuted", "None"])
@pytest.mark.parametrize("shape, size", [((300, 300), 64), ((300, 200), 7), ((50, 37), 8)])
def test_max_abs_blocks_equal_brute_force_including_ragged_last_blocks(shape, size, identity):
    rng = np.random.default_rng(2)
    matrix = rng.uniform(-1, 1, size=shape).astype(np.float16).astype(np.float32)  # ties occur
    matrix[3, 4], matrix[4, 3] = -1.0, 1.0  # a tie of +1 and -1 in one block: +1 wins
    rows = None if identity else rng.permutation(shape[0])
    cols = None if identity else rng.permutation(shape[1])
    reduced = matrix_view.reduce_window(
        matrix, rows, cols, (0, shape[0]), (0, shape[1]), size, reduce="max_abs"
    )
    ordered = matrix if identity else matrix[np.ix_(rows, cols)]
    expected = _brute_block_max_abs(ordered, size)
    assert reduced.values.shape == expected.shape and max(expected.shape) <= size
    # a selection, not arithmetic: the very float32 values of the matrix
    np.testing.assert_array_equal(reduced.values, expected.astype(np.float32))


def test_max_abs_keeps_a_lone_strong_pair_that_the_mean_divides():
    rng = np.random.default_rng(3)
    matrix = (0.01 * rng.standard_normal((2048, 2048))).astype(np.float32)
    matrix[1000, 77] = matrix[77, 1000] = -0.97
    mean = matrix_view.reduce_window(matrix, None, None, (0, 2048), (0, 2048), 256)
    peak = matrix_view.reduce_window(
        matrix, None, None, (0, 2048), (0, 2048), 256, reduce="max_abs"
    )
    assert mean.block == peak.block == (8, 8)
    cell = (1000 // 8, 77 // 8)
    assert abs(mean.values[cell]) < 0.05  # -0.97 / 64 plus noise
    assert peak.values[cell] == np.float32(-0.97) and peak.values[cell[::-1]] == np.float32(-0.97)
    others = np.abs(peak.values).copy()
    others[cell] = others[cell[::-1]] = 0
    assert others.max() < 0.1


def test_max_abs_marks_a_block_holding_nan_and_refuses_unknown_reductions():
    matrix = np.zeros((8, 8), dtype=np.float32)
    matrix[5, 6] = np.nan
    matrix[0, 0] = 0.5
    peak = matrix_view.reduce_window(matrix, None, None, (0, 8), (0, 8), 2, reduce="max_abs")
    assert np.isnan(peak.values[1, 1]) and np.isfinite(np.delete(peak.values.ravel(), 3)).all()
    assert peak.values[0, 0] == np.float32(0.5)
    with pytest.raises(ValueError, match="reduce must be one of"):
        matrix_view.reduce_window(matrix, None, None, (0, 8), (0, 8), 2, reduce="median")
