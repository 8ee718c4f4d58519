"""The correlation routes: steps, a matrix overview or zoomed window, matching, channel stats.

A correlation series (kind "correlation", a blob sequence) holds at each logged
step a `CorrelationStep`: the [R, C] Pearson matrix of a layer's channels (R = C
within a layer) or across two networks (`CorrelationInfo.cross`), per-channel
statistics, and for cross series the semi- and bipartite matchings. Every route
is documented in docs/http_api.md.

The matrix route serves a window of the matrix in a chosen channel order,
reduced on the server to at most `size` cells per axis, by block means
(`reduce=mean`) or by the signed value of largest |ρ| in each block
(`reduce=max_abs`, which keeps a lone strong pair visible): the overview of a
2048-channel layer is 256 × 256 cells, a zoomed window is full resolution once
it fits. Steps written with `packing=UPPER_TRIANGLE` are unpacked to the full
symmetric matrix. Every step says how its channels were read (channel_dim of
activation_shape) and over how many samples; `rank_deficient` is true when
there are no more samples than channels.

Arguments, the steps listing, decoding and caching (by blob key) and the
damaged-step policy come from `blob_kind.BlobKindRoutes`. A step is validated
when decoded: the matrix's bytes, packing and shape (square within a layer,
channels at `channel_dim` of the activation shape), |ρ| ≤ 1 within a few
epsilons of the stored dtype (a flipped byte served ρ = 107.3), channel stats
of one value per channel with dead channels in range, matchings of the
matrix's sizes with indices in range. A step that fails is answered with 200
and its `error` (the tab marks that step); clustered orders are cached by blob key.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from tensorboard import errors

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_kind, blob_steps, matrix_view, responses
from deepscope.tb_plugin.blob_kind import Base64Json, Query, Series, Step, StepError

KIND = "correlation"
ORDERS = ("original", "clustered", "matched")
DEFAULT_SIZE = 256  # cells per axis of the overview: 256² float32 ≈ 350 KB of base64
MAX_SIZE = 1024
# Decoded steps kept (a 2048-channel matrix is 16 MB as float32).
_STEP_CACHE = 8
_ORDER_CACHE = 64
# |ρ| may exceed 1 by rounding only: this many machine epsilons of the stored dtype.
_RHO_EPSILONS = 8


@dataclasses.dataclass(frozen=True)
class DecodedStats:
    """A side's `ChannelStats`, decoded and checked: float32 [channels] or None when absent."""

    mean: np.ndarray | None
    std: np.ndarray | None
    positive_fraction: np.ndarray | None
    dead: list[int]  # ascending channel indices
    non_finite: int


@dataclasses.dataclass(frozen=True)
class DecodedMatching:
    """A cross step's matchings, decoded and checked against the matrix's shape."""

    semi_cols: np.ndarray  # int64 [R]
    semi_corr: np.ndarray  # float64 [R]
    bipartite_rows: np.ndarray  # int64 [K], K <= min(R, C), each row once
    bipartite_cols: np.ndarray  # int64 [K], each column once
    bipartite_corr: np.ndarray  # float64 [K]
    semi_mean: float
    bipartite_mean: float


@dataclasses.dataclass(frozen=True)
class DecodedFit:
    """A cross step's regression and CKA (`CrossNetworkFit`), checked against the rows.

    The arrays are None when the step was logged without the regression
    (compare(regression=False)): then only cka is known.
    """

    least_squares_error: np.ndarray | None  # float64 [R], in [0, 1] or NaN
    l1_error: np.ndarray | None  # float64 [R], in [0, 1] or NaN
    l1_channels: np.ndarray | None  # int64 [R], 0 to predictors
    l1_alpha: np.ndarray | None  # float64 [R], >= 0 or NaN
    mean_least_squares_error: float
    mean_l1_error: float
    mean_l1_channels: float
    keep: float
    path_factor: float
    cka: float
    predictors: int


@dataclasses.dataclass(frozen=True)
class DecodedCorrelation:
    """A decoded, validated `CorrelationStep`."""

    message: pb.CorrelationStep  # as stored (samples, activation_shape, redundant_fraction)
    matrix: np.ndarray  # float32 [R, C], read-only
    row_stats: DecodedStats
    col_stats: DecodedStats | None  # cross series only
    matching: DecodedMatching | None  # cross series with a matching only
    fit: DecodedFit | None = None  # compare()'s steps only


def _unpack_upper_triangle(packed: np.ndarray) -> np.ndarray:
    """The symmetric [C, C] matrix from its upper triangle with the diagonal, row by row."""
    if packed.ndim != 1 or packed.size == 0:
        raise StepError(
            "a packed (upper-triangle) matrix must be one non-empty row of "
            f"C(C+1)/2 values, got shape {list(packed.shape)}"
        )
    n = packed.size
    channels = (math.isqrt(8 * n + 1) - 1) // 2
    if channels * (channels + 1) // 2 != n:
        raise StepError(
            f"a packed (upper-triangle) matrix of {n} values is no C(C+1)/2 "
            f"(the nearest are {channels * (channels + 1) // 2} and "
            f"{(channels + 1) * (channels + 2) // 2})"
        )
    matrix = np.empty((channels, channels), dtype=np.float32)
    rows, cols = np.triu_indices(channels)
    matrix[rows, cols] = packed
    matrix[cols, rows] = packed
    return matrix


def _check_rho(values: np.ndarray, what: str, stored: np.dtype | None = None) -> None:
    """Correlations must lie in [-1, 1] within rounding (NaN allowed: undefined).

    `values` as float32 (or wider); `stored`: the dtype they were stored in,
    whose epsilon sets the tolerance (UINT8_LINEAR decodes to float32).
    """
    if not values.size:
        return
    dtype = np.dtype(stored if stored is not None else values.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float32)
    high, low = values.max(), values.min()  # one pass each; NaN propagates
    if np.isnan(high) or np.isnan(low):
        finite = values[~np.isnan(values)]
        if not finite.size:
            return
        high, low = finite.max(), finite.min()
    largest = float(max(high, -low))
    if largest > 1.0 + _RHO_EPSILONS * float(np.finfo(dtype).eps):
        raise StepError(
            f"{what} holds |ρ| = {largest:.6g}, beyond 1: the log is damaged (a flipped byte?)"
        )


def _decode(array: pb.Array, what: str) -> np.ndarray:
    try:
        return arrays.decode_array(array)
    except ValueError as error:
        raise StepError(f"unreadable {what} ({error})") from None


def decode_matrix(message: pb.CorrelationStep, info: pb.CorrelationInfo) -> np.ndarray:
    """The step's matrix as float32 [R, C], read-only, checked.

    A within-layer step packed as its upper triangle is unpacked; a packed
    cross step, an unknown packing, a wrong size, |ρ| beyond 1 or an
    activation shape whose channel count disagrees with the matrix raise StepError.
    """
    if not message.matrix.shape:
        raise StepError("the step holds no matrix")
    stored = _decode(message.matrix, "matrix")
    matrix = np.asarray(stored, dtype=np.float32)
    _check_rho(matrix, "the matrix", stored.dtype)
    if message.packing == pb.UPPER_TRIANGLE:
        if info.cross:
            raise StepError("a cross-network matrix cannot be packed as an upper triangle")
        matrix = _unpack_upper_triangle(matrix)
    elif message.packing != pb.FULL:
        raise StepError(
            f"unknown matrix packing {int(message.packing)} (written by a newer deepscope?)"
        )
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise StepError(f"the matrix has shape {list(matrix.shape)}, not [rows, columns]")
    if not info.cross and matrix.shape[0] != matrix.shape[1]:
        raise StepError(f"a within-layer matrix must be square, got {list(matrix.shape)}")
    shape, dim = list(message.activation_shape), int(info.channel_dim)
    if shape and not (0 <= dim < len(shape) and shape[dim] == matrix.shape[0]):
        raise StepError(
            f"the activation shape {shape} has no {matrix.shape[0]} channels at "
            f"dim {dim}, which the matrix has"
        )
    matrix = np.asarray(matrix, dtype=np.float32)
    matrix.setflags(write=False)
    return matrix


def decode_stats(stats: pb.ChannelStats, channels: int, side: str) -> DecodedStats:
    """A side's channel statistics, each array empty or one value per channel, checked."""
    columns = {}
    for name in ("mean", "std", "positive_fraction"):
        array = getattr(stats, name)
        if not array.shape and not array.data:
            columns[name] = None
            continue
        values = np.asarray(_decode(array, f"{side}.{name}"), dtype=np.float32).reshape(-1)
        if values.size != channels:
            raise StepError(
                f"{side}.{name} holds {values.size} values for the matrix's {channels} channels"
            )
        columns[name] = values
    with np.errstate(invalid="ignore"):
        if columns["std"] is not None and np.any(columns["std"] < 0):
            raise StepError(f"{side}.std holds negative standard deviations")
        fraction = columns["positive_fraction"]
        if fraction is not None and np.any((fraction < 0) | (fraction > 1)):
            raise StepError(f"{side}.positive_fraction holds fractions outside [0, 1]")
    dead = sorted(int(i) for i in stats.dead)
    if dead and not (0 <= dead[0] and dead[-1] < channels):
        raise StepError(
            f"{side}.dead names channel {dead[0] if dead[0] < 0 else dead[-1]} of "
            f"{channels} (0 to {channels - 1})"
        )
    return DecodedStats(
        columns["mean"], columns["std"], columns["positive_fraction"], dead, int(stats.non_finite)
    )


def decode_matching(matching: pb.Matching, shape: tuple[int, int]) -> DecodedMatching | None:
    """A cross step's matchings checked against the [R, C] matrix; None when it holds none."""
    if not matching.semi_corr.shape and not matching.bipartite_corr.shape:
        return None
    n_rows, n_cols = shape

    def ints(array: pb.Array, what: str, bound: int) -> np.ndarray:
        values = np.asarray(_decode(array, f"matching.{what}")).reshape(-1)
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise StepError(f"matching.{what} holds {values.dtype} values, not indices")
        values = values.astype(np.int64)
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise StepError(f"matching.{what} holds indices outside 0 to {bound - 1}")
        return values

    def floats(array: pb.Array, what: str) -> np.ndarray:
        values = np.asarray(_decode(array, f"matching.{what}"), dtype=np.float64).reshape(-1)
        _check_rho(values, f"matching.{what}", np.dtype(np.float32))
        return values

    semi_cols, semi_corr = (
        ints(matching.semi_cols, "semi_cols", n_cols),
        floats(matching.semi_corr, "semi_corr"),
    )
    rows = ints(matching.bipartite_rows, "bipartite_rows", n_rows)
    cols = ints(matching.bipartite_cols, "bipartite_cols", n_cols)
    corr = floats(matching.bipartite_corr, "bipartite_corr")
    if semi_cols.size != n_rows or semi_corr.size != n_rows:
        raise StepError(
            f"the semi-matching holds {semi_cols.size} columns and {semi_corr.size} "
            f"correlations for the matrix's {n_rows} rows"
        )
    if not rows.size == cols.size == corr.size <= min(n_rows, n_cols):
        raise StepError(
            f"the bipartite matching holds {rows.size} rows, {cols.size} columns and "
            f"{corr.size} correlations; a {n_rows} x {n_cols} matrix pairs at most "
            f"{min(n_rows, n_cols)}"
        )
    if np.unique(rows).size != rows.size or np.unique(cols).size != cols.size:
        raise StepError("the bipartite matching uses a row or column twice")
    for name in ("semi_mean", "bipartite_mean"):
        _check_rho(np.array([getattr(matching, name)], np.float32), f"matching.{name}")
    return DecodedMatching(
        semi_cols,
        semi_corr,
        rows,
        cols,
        corr,
        float(matching.semi_mean),
        float(matching.bipartite_mean),
    )


# Errors are fractions of a variance: [0, 1] within float32 rounding.
_FRACTION_SLACK = 8 * float(np.finfo(np.float32).eps)


def decode_fit(fit: pb.CrossNetworkFit, n_rows: int, n_cols: int) -> DecodedFit:
    """A cross step's `CrossNetworkFit` checked: one value per row, errors and CKA in
    [0, 1] (NaN allowed), channel counts within the predictors, α not negative."""
    predictors = int(fit.predictors)
    if predictors > n_cols:
        raise StepError(
            f"cross_network.predictors is {predictors}, but the other side has {n_cols} channels"
        )
    names = ("least_squares_error", "l1_error", "l1_channels", "l1_alpha")
    present = [bool(getattr(fit, name).shape) or bool(getattr(fit, name).data) for name in names]
    columns: dict[str, np.ndarray | None] = dict.fromkeys(names)
    if any(present):
        for name in names:
            values = np.asarray(_decode(getattr(fit, name), f"cross_network.{name}")).reshape(-1)
            if values.size != n_rows:
                raise StepError(
                    f"cross_network.{name} holds {values.size} values for the matrix's "
                    f"{n_rows} rows"
                )
            if name == "l1_channels":
                if not np.issubdtype(values.dtype, np.integer):
                    raise StepError(f"cross_network.l1_channels holds {values.dtype} values")
                values = values.astype(np.int64)
                if values.size and (values.min() < 0 or values.max() > max(predictors, 0)):
                    raise StepError(
                        f"cross_network.l1_channels holds counts outside 0 to {predictors} "
                        "(the usable predictors)"
                    )
            else:
                if not np.issubdtype(values.dtype, np.floating):
                    raise StepError(f"cross_network.{name} holds {values.dtype} values")
                values = values.astype(np.float64)
                with np.errstate(invalid="ignore"):
                    if name == "l1_alpha":
                        bad = np.any(values < 0) or np.any(np.isinf(values))
                    else:
                        bad = np.any((values < -_FRACTION_SLACK) | (values > 1 + _FRACTION_SLACK))
                if bad:
                    what = "negative or infinite" if name == "l1_alpha" else "outside [0, 1]"
                    raise StepError(f"cross_network.{name} holds values {what}")
            columns[name] = values
    for name in ("mean_least_squares_error", "mean_l1_error", "cka"):
        value = float(getattr(fit, name))
        if not (math.isnan(value) or -_FRACTION_SLACK <= value <= 1 + _FRACTION_SLACK):
            raise StepError(f"cross_network.{name} is {value:.6g}, outside [0, 1]")
    mean_channels = float(fit.mean_l1_channels)
    if not (math.isnan(mean_channels) or 0 <= mean_channels <= max(predictors, 0)):
        raise StepError(
            f"cross_network.mean_l1_channels is {mean_channels:.6g}, outside 0 to {predictors}"
        )
    return DecodedFit(
        columns["least_squares_error"],
        columns["l1_error"],
        columns["l1_channels"],
        columns["l1_alpha"],
        float(fit.mean_least_squares_error),
        float(fit.mean_l1_error),
        mean_channels,
        float(fit.keep),
        float(fit.path_factor),
        float(fit.cka),
        predictors,
    )


def decode_correlation_step(data: bytes, info: pb.CorrelationInfo) -> DecodedCorrelation:
    """Decode and validate a `CorrelationStep` blob; StepError saying what is wrong."""
    try:
        message = pb.CorrelationStep.FromString(data)
    except Exception as error:  # protobuf's DecodeError
        raise StepError(f"not a readable CorrelationStep ({responses.cap(str(error))})") from None
    matrix = decode_matrix(message, info)
    n_rows, n_cols = matrix.shape
    row_stats = decode_stats(message.row_stats, n_rows, "row_stats")
    col_stats = decode_stats(message.col_stats, n_cols, "col_stats") if info.cross else None
    matching = decode_matching(message.matching, matrix.shape) if info.cross else None
    fit = None
    if message.HasField("cross_network"):
        if not info.cross:
            raise StepError("a within-layer step holds a cross-network fit")
        fit = decode_fit(message.cross_network, n_rows, n_cols)
    return DecodedCorrelation(message, matrix, row_stats, col_stats, matching, fit)


def _stats_json(stats: DecodedStats, channels: int) -> dict:
    def column(values: np.ndarray | None) -> list:
        return [] if values is None else responses.json_numbers(values, null=True)

    return {
        "channels": channels,
        "mean": column(stats.mean),
        "std": column(stats.std),
        "positive_fraction": column(stats.positive_fraction),
        "dead": stats.dead,
        "non_finite": stats.non_finite,
    }


class CorrelationRoutes(blob_kind.BlobKindRoutes):
    """Routes serving correlation series under /data/plugin/deepscope/correlation_*."""

    KIND = KIND
    CACHE_CAPACITY = _STEP_CACHE

    def __init__(self, context):
        super().__init__(context)
        self._orders = blob_steps.LRUCache(_ORDER_CACHE)

    # ------------------------------------------------------------------ the kind's parts

    def decode(self, data: bytes, info: pb.CorrelationInfo) -> DecodedCorrelation:
        return decode_correlation_step(data, info)

    def series_facts(self, series: Series) -> dict:
        info = series.info
        return {
            "cross": bool(info.cross),
            "channel_dim": int(info.channel_dim),
            "row_name": info.row_name,
            "col_name": info.col_name,
        }

    def step_routes(self) -> dict:
        return {
            "correlation_matrix": self.matrix,
            "correlation_matching": self.matching,
            "correlation_channels": self.channels,
            "correlation_regression": self.regression,
        }

    def check_series(self, route: str, series: Series) -> None:
        if route == "correlation_matching" and not series.info.cross:
            raise errors.InvalidArgumentError(
                f"tag {responses.echo(series.tag)} of run {responses.echo(series.run)} holds "
                "correlations within one layer; matchings exist for cross-network series only "
                "(deepscope.compare's tags)"
            )

    # ------------------------------------------------------------------ orders

    def _order(self, step: Step, info: pb.CorrelationInfo, order: str):
        """(row_order, col_order) int64 permutations: position p shows channel order[p]."""
        decoded: DecodedCorrelation = step.decoded
        n_rows, n_cols = decoded.matrix.shape
        if order == "original":
            return np.arange(n_rows, dtype=np.int64), np.arange(n_cols, dtype=np.int64)
        key = (step.key, order)
        cached = self._orders.get(key)
        if cached is not None:
            return cached
        if order == "clustered":
            symmetric = not info.cross and n_rows == n_cols
            result = matrix_view.clustered_order(decoded.matrix, symmetric=symmetric)
        else:
            matching = decoded.matching
            if not info.cross or matching is None or not matching.bipartite_rows.size:
                raise errors.InvalidArgumentError(
                    "order=matched needs a cross-network series with a bipartite matching "
                    "(a compare tag); use order=original or order=clustered for this one"
                )
            result = matrix_view.matched_order(
                (n_rows, n_cols), matching.bipartite_rows, matching.bipartite_cols
            )
        result[0].setflags(write=False)
        result[1].setflags(write=False)
        self._orders.put(key, result)
        return result

    # ------------------------------------------------------------------ routes

    def matrix(self, series: Series, step: Step, query: Query) -> Base64Json:
        """A window of the step's matrix in an order, block-reduced (`correlation_matrix`)."""
        info, decoded = series.info, step.decoded
        order = responses.choice_arg(query, "order", ORDERS, "original")
        reduce = responses.choice_arg(query, "reduce", matrix_view.REDUCTIONS, "mean")
        size = responses.int_arg(query, "size", DEFAULT_SIZE, minimum=1)
        if size > MAX_SIZE:
            raise errors.InvalidArgumentError(
                f"size must be at most {MAX_SIZE} cells per axis, got {size}; "
                "zoom into a window (row_start/row_end/col_start/col_end) for full resolution"
            )
        n_rows, n_cols = decoded.matrix.shape
        rows = _window(query, "row", n_rows)
        cols = _window(query, "col", n_cols)
        row_order, col_order = self._order(step, info, order)
        identity = order == "original"  # slices, not gathers
        reduced = matrix_view.reduce_window(
            decoded.matrix,
            None if identity else row_order,
            None if identity else col_order,
            rows,
            cols,
            size,
            reduce,
        )
        row_stats = decoded.row_stats
        col_stats = decoded.col_stats if info.cross else row_stats
        body = {
            **_sampling_json(decoded, info),
            "cross": bool(info.cross),
            "row_name": info.row_name,
            "col_name": info.col_name,
            "shape": [n_rows, n_cols],
            "order": order,
            "row_order": row_order.tolist(),
            "col_order": col_order.tolist(),
            "window": {
                "row_start": rows[0],
                "row_end": rows[1],
                "col_start": cols[0],
                "col_end": cols[1],
            },
            "reduce": reduce,
            "reduction": reduce if reduced.block != (1, 1) else "none",
            "block": list(reduced.block),
            "row_edges": reduced.row_edges.tolist(),
            "col_edges": reduced.col_edges.tolist(),
            "row_dead": row_stats.dead,
            "col_dead": col_stats.dead,
            "redundant_fraction": responses.json_number(
                decoded.message.redundant_fraction, null=True
            ),
            "values": {"dtype": "float32", "shape": list(reduced.values.shape), "base64": ""},
        }
        return Base64Json(body, reduced.values.astype("<f4", copy=False).tobytes())

    def matching(self, series: Series, step: Step, query: Query) -> dict:
        """The semi- and bipartite matchings of a cross step (`correlation_matching`)."""
        info, decoded = series.info, step.decoded
        matching = decoded.matching
        if matching is None:
            raise errors.NotFoundError(
                f"step {step.step} of tag {responses.echo(series.tag)} of run "
                f"{responses.echo(series.run)} holds no matching"
            )

        def numbers(values: np.ndarray) -> list:
            return responses.json_numbers(values, null=True)

        return {
            "shape": list(decoded.matrix.shape),
            "row_name": info.row_name,
            "col_name": info.col_name,
            "semi": {
                "rows": list(range(matching.semi_corr.size)),
                "cols": matching.semi_cols.tolist(),
                "corr": numbers(matching.semi_corr),
                "sorted": numbers(_sorted_descending(matching.semi_corr)),
                "mean": responses.json_number(matching.semi_mean, null=True),
            },
            "bipartite": {
                "rows": matching.bipartite_rows.tolist(),
                "cols": matching.bipartite_cols.tolist(),
                "corr": numbers(matching.bipartite_corr),
                "sorted": numbers(_sorted_descending(matching.bipartite_corr)),
                "mean": responses.json_number(matching.bipartite_mean, null=True),
            },
        }

    def regression(self, series: Series, step: Step, query: Query) -> dict:
        """A cross step's regression (Li et al.) and CKA (`correlation_regression`)."""
        info, decoded = series.info, step.decoded
        fit = decoded.fit
        head = {
            "shape": list(decoded.matrix.shape),
            "row_name": info.row_name,
            "col_name": info.col_name,
        }
        if fit is None:  # a within-layer step, or a cross one from add_channel_correlation
            return {
                **head,
                "available": False,
                "cka": None,
                "regression": False,
                **dict.fromkeys(_FIT_FIELDS),
            }

        def numbers(values: np.ndarray | None) -> list | None:
            return None if values is None else responses.json_numbers(values, null=True)

        return {
            **head,
            "available": True,
            "cka": responses.json_number(fit.cka, null=True),
            "regression": fit.least_squares_error is not None,
            "predictors": fit.predictors,
            "keep": responses.json_number(fit.keep, null=True),
            "path_factor": responses.json_number(fit.path_factor, null=True),
            "mean_least_squares_error": responses.json_number(
                fit.mean_least_squares_error, null=True
            ),
            "mean_l1_error": responses.json_number(fit.mean_l1_error, null=True),
            "mean_l1_channels": responses.json_number(fit.mean_l1_channels, null=True),
            "least_squares_error": numbers(fit.least_squares_error),
            "l1_error": numbers(fit.l1_error),
            "l1_channels": None if fit.l1_channels is None else fit.l1_channels.tolist(),
            "l1_alpha": numbers(fit.l1_alpha),
        }

    def channels(self, series: Series, step: Step, query: Query) -> dict:
        """Per-channel statistics of a step (`correlation_channels`)."""
        info, decoded = series.info, step.decoded
        n_rows, n_cols = decoded.matrix.shape
        return {
            **_sampling_json(decoded, info),
            "cross": bool(info.cross),
            "redundant_fraction": responses.json_number(
                decoded.message.redundant_fraction, null=True
            ),
            "rows": _stats_json(decoded.row_stats, n_rows),
            "cols": _stats_json(decoded.col_stats, n_cols) if decoded.col_stats else None,
        }


# The regression fields of `correlation_regression` (null when a step holds none).
_FIT_FIELDS = (
    "predictors",
    "keep",
    "path_factor",
    "mean_least_squares_error",
    "mean_l1_error",
    "mean_l1_channels",
    "least_squares_error",
    "l1_error",
    "l1_channels",
    "l1_alpha",
)


def _sampling_json(step: DecodedCorrelation, info: pb.CorrelationInfo) -> dict:
    """How the step's channels were read and over how many samples.

    rank_deficient: no more samples than channels (of the larger side): the
    matrix then has rank at most samples − 1, and its |ρ| near 1 say little.
    """
    samples = int(step.message.samples)
    return {
        "samples": samples,
        "channel_dim": int(info.channel_dim),
        "activation_shape": [int(n) for n in step.message.activation_shape],
        "rank_deficient": samples <= max(step.matrix.shape),
    }


def _sorted_descending(values: np.ndarray) -> np.ndarray:
    """Matched correlations from highest to lowest (non-finite values last)."""
    finite = values[np.isfinite(values)]
    return np.concatenate([np.sort(finite)[::-1], values[~np.isfinite(values)]])


def _window(query: Query, axis: str, length: int) -> tuple[int, int]:
    """The half-open position range [axis_start, axis_end) of the window, checked."""
    start = responses.int_arg(query, f"{axis}_start", 0, minimum=0)
    end = responses.int_arg(query, f"{axis}_end", length, minimum=1)
    if not start < end <= length:
        raise errors.InvalidArgumentError(
            f"{axis}_start={start}, {axis}_end={end} is not a window of the matrix's "
            f"{length} {axis}s: need 0 <= {axis}_start < {axis}_end <= {length}"
        )
    return start, end
