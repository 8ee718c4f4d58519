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
