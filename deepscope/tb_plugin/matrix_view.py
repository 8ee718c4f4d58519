"""Pure numpy helpers for showing a correlation matrix: channel orders and block reductions.

The correlation routes serve an [R, C] matrix of Pearson correlations in one of
three channel orders and reduced on the server to a bounded number of cells:
these functions do the arithmetic (arrays in, arrays out; no I/O, no HTTP, no
torch). Positions are indices into the *ordered* matrix; orders map positions to
channel ids of the original numbering.
"""

from __future__ import annotations

import dataclasses

import numpy as np

REDUCTIONS = ("mean", "max_abs")


@dataclasses.dataclass(frozen=True)
class Reduced:
    """A window of a matrix reduced to at most `size` × `size` cells, block by block.

    Cell (i, j) reduces positions rows[i]:rows[i+1] × cols[j]:cols[j+1]
    (edges are positions in the ordered matrix, ascending, starting at the
    window's start and ending at its end): their mean ("mean"), or the signed
    value of largest magnitude ("max_abs"; +x over −x on a tie; NaN when the
    block holds one). Blocks are `block` positions wide per axis; the last one
    may be narrower.
    """

    values: np.ndarray  # float32 [len(row_edges) - 1, len(col_edges) - 1]
    row_edges: np.ndarray  # int64 [h + 1]
    col_edges: np.ndarray  # int64 [w + 1]
    block: tuple[int, int]  # positions per cell along rows, columns (1: full resolution)


def block_edges(start: int, end: int, size: int) -> tuple[np.ndarray, int]:
    """Edges of contiguous blocks covering [start, end) in at most `size` blocks.

    Every block is `ceil((end - start) / size)` positions wide except possibly
    the last. Returns (edges int64 [k + 1], block width).
    """
    if end <= start or size < 1:
        raise ValueError(f"need start < end and size >= 1, got [{start}, {end}) and {size}")
    block = -(-(end - start) // size)
    edges = np.arange(start, end, block, dtype=np.int64)
    return np.append(edges, np.int64(end)), block


def reduce_window(
    matrix: np.ndarray,
    row_order: np.ndarray | None,
    col_order: np.ndarray | None,
    rows: tuple[int, int],
    cols: tuple[int, int],
    size: int,
    reduce: str = "mean",
) -> Reduced:
    """The window rows × cols of matrix[row_order][:, col_order], block-reduced to ≤ size².

    Args:
      matrix: [R, C] correlations in the original channel numbering.
      row_order, col_order: permutations (int, [R] and [C]): position p shows
        channel row_order[p]; None for the original order.
      rows, cols: half-open [start, end) position ranges of the window.
      size: the most cells per axis; a window no larger is returned as is
        (block (1, 1)), a larger one reduced over contiguous blocks of positions.
      reduce: "mean" (block means: the overall level) or "max_abs" (the
        signed value of largest |ρ| in each block: a lone |ρ| ≈ 1 pair in a
        2048 → 256 overview stays visible instead of being divided by 64).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    row_edges, row_block = block_edges(rows[0], rows[1], size)
    col_edges, col_block = block_edges(cols[0], cols[1], size)
    matrix = np.asarray(matrix)
    # Rows first: taking whole rows is a copy of contiguous memory, and summing their
    # blocks shrinks what the (slower) column gather has to touch.
    if row_order is None:
        band = matrix[rows[0] : rows[1]]
    else:
        band = matrix[row_order[rows[0] : rows[1]]]
    if reduce == "max_abs":
        return _reduce_max_abs(band, col_order, cols, row_edges, col_edges, (row_block, col_block))
    band = _block_sums(band, row_block, axis=0)
    if col_order is None:
        window = band[:, cols[0] : cols[1]]
    else:
        window = band[:, col_order[cols[0] : cols[1]]]
    if row_block == 1 and col_block == 1:
        values = np.ascontiguousarray(window, dtype=np.float32)
    else:
        sums = _block_sums(window, col_block, axis=1)
        counts = np.outer(np.diff(row_edges), np.diff(col_edges))
        values = (sums / counts).astype(np.float32)
    return Reduced(values, row_edges, col_edges, (row_block, col_block))


def _reduce_max_abs(
    band: np.ndarray,
    col_order: np.ndarray | None,
    cols: tuple[int, int],
    row_edges: np.ndarray,
    col_edges: np.ndarray,
    block: tuple[int, int],
) -> Reduced:
    """The signed value of largest magnitude per block, from block maxima and minima.

    max(|v|) is max or −min; the larger wins, the maximum on a tie (+x over
    −x). Maxima and minima reduce row blocks, then column blocks, like sums;
    NaN propagates through both.
    """
    highs = _block_extreme(band, block[0], axis=0, largest=True)
    lows = _block_extreme(band, block[0], axis=0, largest=False)
    columns = slice(cols[0], cols[1]) if col_order is None else col_order[cols[0] : cols[1]]
    highs = _block_extreme(highs[:, columns], block[1], axis=1, largest=True)
    lows = _block_extreme(lows[:, columns], block[1], axis=1, largest=False)
    with np.errstate(invalid="ignore"):
        values = np.where(highs >= -lows, highs, lows)
    values = np.where(np.isnan(highs) | np.isnan(lows), np.nan, values)
    return Reduced(np.ascontiguousarray(values, dtype=np.float32), row_edges, col_edges, block)


def _block_extreme(values: np.ndarray, block: int, axis: int, largest: bool) -> np.ndarray:
    """Maxima (or minima) over consecutive blocks of `block` entries along axis 0 or 1."""
    if block == 1:
        return values
    if axis == 1:
        return _block_extreme(values.T, block, axis=0, largest=largest).T
    reduce = np.max if largest else np.min
    n = values.shape[0]
    whole = n // block * block
    parts = [reduce(values[:whole].reshape(n // block, block, -1), axis=1)]
    if whole < n:
        parts.append(reduce(values[whole:], axis=0, keepdims=True))
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _block_sums(values: np.ndarray, block: int, axis: int) -> np.ndarray:
    """Sums over consecutive blocks of `block` entries along axis 0 or 1 (last one ragged).

    A reshape and sum for the whole blocks (much faster than `np.add.reduceat`
    on megabyte arrays), plus the ragged rest.
    """
    if block == 1:
        return values
    if axis == 1:
        return _block_sums(values.T, block, axis=0).T
    n = values.shape[0]
    whole = n // block * block
    parts = [values[:whole].reshape(n // block, block, -1).sum(axis=1, dtype=np.float64)]
    if whole < n:
        parts.append(values[whole:].sum(axis=0, keepdims=True, dtype=np.float64))
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def clustered_order(matrix: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row and column orders that put similar channels next to each other.

    The leaf order of `scipy.cluster.hierarchy` average linkage. Within a layer
    (symmetric, [C, C]) the distance between channels i and j is 1 − |ρ_ij|
    (read from the upper triangle), and rows and columns get the same order.
    Across two networks ([R, C]) rows are clustered by the Euclidean distance
    between their |ρ| profiles over the columns, and columns by theirs over the
    rows. Non-finite values count as 0.
    """
    magnitude = np.abs(np.nan_to_num(np.asarray(matrix, dtype=np.float32), nan=0.0))
    if symmetric:
        if magnitude.shape[0] != magnitude.shape[1]:
            raise ValueError(f"a symmetric order needs a square matrix, got {magnitude.shape}")
        n = magnitude.shape[0]
        upper = np.triu_indices(n, k=1)
        condensed = 1.0 - np.minimum(magnitude[upper], 1.0).astype(np.float64)
        order = _leaves(condensed, n)
        return order, order.copy()
    return _leaves(_profile_distances(magnitude), magnitude.shape[0]), _leaves(
        _profile_distances(magnitude.T), magnitude.shape[1]
    )


def _profile_distances(profiles: np.ndarray) -> np.ndarray:
    """Condensed Euclidean distances between rows, through one matrix product (BLAS).

    ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b: for 2048 rows of 2048 values this takes
    milliseconds where `scipy.spatial.distance.pdist` takes seconds.
    """
    x = np.ascontiguousarray(profiles, dtype=np.float32)  # |ρ| in [0, 1]: float32 suffices
    squared = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    gram = (x @ x.T).astype(np.float64)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0)
    upper = np.triu_indices(x.shape[0], k=1)
    return np.sqrt(d2[upper])


def _leaves(condensed: np.ndarray, n: int) -> np.ndarray:
    """Leaf order of the average-linkage dendrogram of n items (condensed distances)."""
    from scipy.cluster import hierarchy

    if n < 3:
        return np.arange(n, dtype=np.int64)
    links = hierarchy.linkage(condensed, method="average")
    return hierarchy.leaves_list(links).astype(np.int64)


def matched_order(
    shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Orders that put the bipartite matching's pairs (rows[k], cols[k]) on the diagonal.

    Matched rows keep their original relative order and come first; column
    position p holds the match of the row at position p. Unmatched rows and
    columns follow, in original order. With every row matched (R ≤ C) the rows
    stay in their original order and only the columns are permuted.
    """
    n_rows, n_cols = shape
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(cols, dtype=np.int64).reshape(-1)
    if rows.shape != cols.shape:
        raise ValueError(f"{rows.size} matched rows but {cols.size} matched columns")
    if rows.size and (
        rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0 or cols.max() >= n_cols
    ):
        raise ValueError(f"matched indices out of range for a {n_rows} x {n_cols} matrix")
    if np.unique(rows).size != rows.size or np.unique(cols).size != cols.size:
        raise ValueError("a bipartite matching uses each row and column at most once")
    by_row = np.argsort(rows, kind="stable")
    rows, cols = rows[by_row], cols[by_row]
    row_order = np.concatenate([rows, np.setdiff1d(np.arange(n_rows), rows)])
    col_order = np.concatenate([cols, np.setdiff1d(np.arange(n_cols), cols)])
    return row_order.astype(np.int64), col_order.astype(np.int64)
