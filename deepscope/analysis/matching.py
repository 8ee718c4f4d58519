"""Matching the channels of two networks by their correlations (Li et al., ICLR 2016).

Given the correlation matrix ρ [R, C] between the R channels of a layer of
network A (rows) and the C channels of the same layer of network B (columns):

- semi-matching pairs each row with its best column, argmax_j ρ_ij (many rows
  may pick the same column);
- bipartite matching is the one-to-one pairing of min(R, C) rows and columns
  that maximizes the sum of ρ over pairs (`scipy.optimize.linear_sum_assignment`).

Both maximize the signed correlation, as the paper does. The paper's figures
plot each matching's correlations sorted in descending order; their means
summarize how much the two networks share. Pure numpy/scipy: arrays in, results out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

REDUNDANT_THRESHOLD = 0.9


@dataclass(frozen=True)
class ChannelMatching:
    """Semi- and bipartite matching of the rows of a correlation matrix to its columns.

    semi_cols (int64 [R]) and semi_corr (float64 [R]): each row's best column and ρ there.
    bipartite_rows, bipartite_cols (int64 [K]) and bipartite_corr (float64 [K]),
    K = min(R, C): the one-to-one pairs, ordered by row.
    """

    semi_cols: np.ndarray
    semi_corr: np.ndarray
    bipartite_rows: np.ndarray
    bipartite_cols: np.ndarray
    bipartite_corr: np.ndarray

    @property
    def semi_mean(self) -> float:
        """Mean ρ of the semi-matching."""
        return float(self.semi_corr.mean()) if self.semi_corr.size else 0.0

    @property
    def bipartite_mean(self) -> float:
        """Mean ρ of the bipartite matching."""
        return float(self.bipartite_corr.mean()) if self.bipartite_corr.size else 0.0

    @property
    def semi_sorted(self) -> np.ndarray:
        """Semi-matching correlations sorted descending: the paper's curve."""
        return np.sort(self.semi_corr)[::-1]

    @property
    def bipartite_sorted(self) -> np.ndarray:
        """Bipartite matching correlations sorted descending: the paper's curve."""
        return np.sort(self.bipartite_corr)[::-1]


def _as_matrix(correlations) -> np.ndarray:
    matrix = np.asarray(correlations, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(
            "expected a non-empty 2-d correlation matrix [rows, cols], "
            f"got shape {list(matrix.shape)}"
        )
    if not np.isfinite(matrix).all():
        raise ValueError(
            "the correlation matrix holds NaN or Inf; CorrelationAccumulator.compute() gives "
            "0 for dead channels, use its matrix"
        )
    return matrix


def semi_matching(correlations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best column: (argmax_j ρ_ij int64 [R], ρ there float64 [R]); ties → lowest j."""
    matrix = _as_matrix(correlations)
    cols = np.argmax(matrix, axis=1).astype(np.int64)
    return cols, matrix[np.arange(matrix.shape[0]), cols]


def bipartite_matching(correlations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one pairs maximizing Σρ: (rows int64 [K], cols int64 [K], ρ float64 [K]).

    K = min(R, C) for a rectangular matrix: every channel of the smaller side
    is matched. Pairs are ordered by row.
    """
    matrix = _as_matrix(correlations)
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return rows.astype(np.int64), cols.astype(np.int64), matrix[rows, cols]


def match_channels(correlations: np.ndarray) -> ChannelMatching:
    """Semi- and bipartite matching of a cross-network correlation matrix [R, C]."""
    semi_cols, semi_corr = semi_matching(correlations)
    rows, cols, corr = bipartite_matching(correlations)
    return ChannelMatching(
        semi_cols=semi_cols,
        semi_corr=semi_corr,
        bipartite_rows=rows,
        bipartite_cols=cols,
        bipartite_corr=corr,
    )


def redundant_fraction(within: np.ndarray, threshold: float = REDUNDANT_THRESHOLD) -> float:
    """Fraction of a layer's C channels with |ρ| > threshold to another channel of it.

    `within` is the layer's symmetric C×C correlation matrix (its diagonal is
    ignored). Dead channels have ρ = 0 and so never count as redundant; the
    fraction is over all C channels.
    """
    matrix = _as_matrix(within)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"redundant_fraction needs a square within-layer matrix, got {list(matrix.shape)}"
        )
    off_diagonal = np.abs(matrix)
    np.fill_diagonal(off_diagonal, 0.0)
    return float(np.mean(np.any(off_diagonal > threshold, axis=1)))
