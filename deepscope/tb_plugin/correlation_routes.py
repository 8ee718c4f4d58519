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
there are no more samples than channels. Decoded steps and clustered orders
are cached by blob key, and step listings remembered, as `blob_steps` says.
"""

from __future__ import annotations

import math

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_steps, matrix_view, responses
from deepscope.tb_plugin.route_context import RouteContext

KIND = "correlation"
ORDERS = ("original", "clustered", "matched")
DEFAULT_SIZE = 256  # cells per axis of the overview: 256² float32 ≈ 350 KB of base64
MAX_SIZE = 1024
_EXAMPLE = "correlation_matrix?run=RUN&tag=TAG"
# Decoded steps kept (a 2048-channel matrix is 16 MB as float32).
_STEP_CACHE = 8
_ORDER_CACHE = 64


class _Step:
    """A decoded `CorrelationStep`: the matrix as float32, the rest as parsed."""

    def __init__(self, blob_step: blob_steps.BlobStep, message: pb.CorrelationStep, matrix):
        self.step = blob_step.step
        self.wall_time = blob_step.wall_time
        self.key = blob_step.blob_keys[0]
        self.message = message
        self.matrix = matrix  # float32 [R, C], read-only


def _unpack_upper_triangle(packed: np.ndarray, where: str) -> np.ndarray:
    """The symmetric [C, C] matrix from its upper triangle with the diagonal, row by row."""
    if packed.ndim != 1 or packed.size == 0:
        raise errors.InvalidArgumentError(
            f"{where}: a packed (upper-triangle) matrix must be one non-empty row of "
            f"C(C+1)/2 values, got shape {list(packed.shape)}"
        )
    n = packed.size
    channels = (math.isqrt(8 * n + 1) - 1) // 2
    if channels * (channels + 1) // 2 != n:
        raise errors.InvalidArgumentError(
            f"{where}: a packed (upper-triangle) matrix of {n} values is no C(C+1)/2 "
            f"(the nearest are {channels * (channels + 1) // 2} and "
            f"{(channels + 1) * (channels + 2) // 2})"
        )
    matrix = np.empty((channels, channels), dtype=np.float32)
    rows, cols = np.triu_indices(channels)
    matrix[rows, cols] = packed
    matrix[cols, rows] = packed
    return matrix


def _decode_matrix(
    message: pb.CorrelationStep, extra_blob: bytes | None, where: str, info: pb.CorrelationInfo
) -> np.ndarray:
    """The step's matrix as float32 [R, C]: in `matrix`, or an `Array` in the second blob.

    A within-layer step packed as its upper triangle is unpacked; a packed
    cross step, an unknown packing, a wrong size or an activation shape whose
    channel count disagrees with the matrix are the step's error.
    """
    array = message.matrix
    if not array.shape and extra_blob is not None:
        array = pb.Array.FromString(extra_blob)
    try:
        matrix = arrays.decode_array(array)
    except ValueError as error:
        raise errors.InvalidArgumentError(f"{where}: unreadable matrix ({error})") from None
    if message.packing == pb.UPPER_TRIANGLE:
        if info.cross:
            raise errors.InvalidArgumentError(
                f"{where}: a cross-network matrix cannot be packed as an upper triangle"
            )
        matrix = _unpack_upper_triangle(np.asarray(matrix, dtype=np.float32), where)
    elif message.packing != pb.FULL:
        raise errors.InvalidArgumentError(
            f"{where}: unknown matrix packing {int(message.packing)} (written by a newer "
            "deepscope?)"
        )
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise errors.InvalidArgumentError(
            f"{where}: the matrix has shape {list(matrix.shape)}, not [rows, columns]"
        )
    shape, dim = list(message.activation_shape), int(info.channel_dim)
    if shape and not (0 <= dim < len(shape) and shape[dim] == matrix.shape[0]):
        raise errors.InvalidArgumentError(
            f"{where}: the activation shape {shape} has no {matrix.shape[0]} channels at "
            f"dim {dim}, which the matrix has"
        )
    matrix = np.asarray(matrix, dtype=np.float32)
    matrix.setflags(write=False)
    return matrix


def _stats_json(stats: pb.ChannelStats, channels: int) -> dict:
    def column(array: pb.Array) -> list:
        if not array.shape:
            return []
        return responses.json_numbers(arrays.decode_array(array).reshape(-1), null=True)

    return {
        "channels": channels,
        "mean": column(stats.mean),
        "std": column(stats.std),
        "positive_fraction": column(stats.positive_fraction),
        "dead": sorted(int(i) for i in stats.dead),
        "non_finite": int(stats.non_finite),
    }


class CorrelationRoutes:
    """Routes serving correlation series under /data/plugin/deepscope/correlation_*."""

    def __init__(self, context: RouteContext):
        self._context = context
        self._steps = blob_steps.LRUCache(_STEP_CACHE)
        self._orders = blob_steps.LRUCache(_ORDER_CACHE)
        self._listings = blob_steps.StepListings(context)

    def apps(self) -> dict:
        return {
            "/correlation_steps": self._serve_steps,
            "/correlation_matrix": self._serve_matrix,
            "/correlation_matching": self._serve_matching,
            "/correlation_channels": self._serve_channels,
        }

    # ------------------------------------------------------------------ reading

    def _series(self, request, example: str):
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        info = self._context.catalog.find(ctx, experiment, run, tag, KIND).correlation
        return run, tag, ctx, experiment, info

    def _read(self, ctx, experiment, run, tag, info: pb.CorrelationInfo, step: int | None) -> _Step:
        steps = self._listings.list(ctx, experiment, run, tag, want=step)
        blob_step = blob_steps.find_step(steps, step, run, tag)
        cached = self._steps.get(blob_step.blob_keys[0])
        if cached is not None:
            return cached
        provider = self._context.data_provider
        where = f"step {blob_step.step} of tag {tag!r} of run {run!r}"
        try:
            message = pb.CorrelationStep.FromString(blob_steps.read_blob(provider, ctx, blob_step))
        except errors.PublicError:
            raise
        except Exception as error:  # protobuf's DecodeError
            raise errors.InvalidArgumentError(f"{where}: unreadable CorrelationStep") from error
        extra = None
        if not message.matrix.shape and len(blob_step.blob_keys) > 1:
            extra = blob_steps.read_blob(provider, ctx, blob_step, index=1)
        decoded = _Step(blob_step, message, _decode_matrix(message, extra, where, info))
        self._steps.put(decoded.key, decoded)
        return decoded

    def _order(self, step: _Step, info: pb.CorrelationInfo, order: str):
        """(row_order, col_order) int64 permutations: position p shows channel order[p]."""
        n_rows, n_cols = step.matrix.shape
        if order == "original":
            return np.arange(n_rows, dtype=np.int64), np.arange(n_cols, dtype=np.int64)
        key = (step.key, order)
        cached = self._orders.get(key)
        if cached is not None:
            return cached
        if order == "clustered":
            symmetric = not info.cross and n_rows == n_cols
            result = matrix_view.clustered_order(step.matrix, symmetric=symmetric)
        else:
            matching = step.message.matching
            if not info.cross or not matching.bipartite_rows.shape:
                raise errors.InvalidArgumentError(
                    "order=matched needs a cross-network series with a bipartite matching "
                    "(a compare tag); use order=original or order=clustered for this one"
                )
            try:
                result = matrix_view.matched_order(
                    (n_rows, n_cols),
                    arrays.decode_array(matching.bipartite_rows),
                    arrays.decode_array(matching.bipartite_cols),
                )
            except ValueError as error:
                raise errors.InvalidArgumentError(
                    f"step {step.step}: the stored matching is unusable ({error})"
                ) from None
        result[0].setflags(write=False)
        result[1].setflags(write=False)
        self._orders.put(key, result)
        return result

    # ------------------------------------------------------------------ routes

    @werkzeug.wrappers.Request.application
    def _serve_steps(self, request):
        example = "correlation_steps?run=RUN&tag=TAG"
        run, tag, ctx, experiment, info = self._series(request, example)
        steps = self._listings.list(ctx, experiment, run, tag)
        body = {
            "run": run,
            "tag": tag,
            "cross": bool(info.cross),
            "channel_dim": int(info.channel_dim),
            "row_name": info.row_name,
            "col_name": info.col_name,
            "steps": [s.step for s in steps],
            "wall_times": [s.wall_time for s in steps],
        }
        return responses.respond_json(request, body)

    @werkzeug.wrappers.Request.application
    def _serve_matrix(self, request):
        run, tag, ctx, experiment, info = self._series(request, _EXAMPLE)
        step_arg = responses.int_arg(request, "step")
        order = responses.choice_arg(request, "order", ORDERS, "original")
        reduce = responses.choice_arg(request, "reduce", matrix_view.REDUCTIONS, "mean")
        size = responses.int_arg(request, "size", DEFAULT_SIZE, minimum=1)
        if size > MAX_SIZE:
            raise errors.InvalidArgumentError(
                f"size must be at most {MAX_SIZE} cells per axis, got {size}; "
                "zoom into a window (row_start/row_end/col_start/col_end) for full resolution"
            )
        step = self._read(ctx, experiment, run, tag, info, step_arg)
        n_rows, n_cols = step.matrix.shape
        rows = _window(request, "row", n_rows)
        cols = _window(request, "col", n_cols)
        row_order, col_order = self._order(step, info, order)
        identity = order == "original"  # slices, not gathers
        reduced = matrix_view.reduce_window(
            step.matrix,
            None if identity else row_order,
            None if identity else col_order,
            rows,
            cols,
            size,
            reduce,
        )
        row_stats, col_stats = step.message.row_stats, step.message.col_stats
        if not info.cross:
            col_stats = row_stats
        body = {
            "run": run,
            "tag": tag,
            "step": step.step,
            "wall_time": step.wall_time,
            **_sampling_json(step, info),
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
            "row_dead": sorted(int(i) for i in row_stats.dead),
            "col_dead": sorted(int(i) for i in col_stats.dead),
            "redundant_fraction": responses.json_number(step.message.redundant_fraction, null=True),
            "values": {"dtype": "float32", "shape": list(reduced.values.shape), "base64": ""},
        }
        data = reduced.values.astype("<f4", copy=False).tobytes()
        return responses.respond_base64_json(request, body, data)

    @werkzeug.wrappers.Request.application
    def _serve_matching(self, request):
        example = "correlation_matching?run=RUN&tag=TAG"
        run, tag, ctx, experiment, info = self._series(request, example)
        if not info.cross:
            raise errors.InvalidArgumentError(
                f"tag {tag!r} of run {run!r} holds correlations within one layer; matchings "
                "exist for cross-network series only (deepscope.compare's tags)"
            )
        step = self._read(ctx, experiment, run, tag, info, responses.int_arg(request, "step"))
        matching = step.message.matching

        def ints(array: pb.Array) -> list:
            return np.asarray(arrays.decode_array(array)).reshape(-1).astype(int).tolist()

        def floats(array: pb.Array) -> np.ndarray:
            return np.asarray(arrays.decode_array(array), dtype=np.float64).reshape(-1)

        if not matching.semi_corr.shape or not matching.bipartite_corr.shape:
            raise errors.NotFoundError(
                f"step {step.step} of tag {tag!r} of run {run!r} holds no matching"
            )
        semi_corr, bip_corr = floats(matching.semi_corr), floats(matching.bipartite_corr)
        semi_rows = list(range(semi_corr.size))
        body = {
            "run": run,
            "tag": tag,
            "step": step.step,
            "wall_time": step.wall_time,
            "shape": list(step.matrix.shape),
            "row_name": info.row_name,
            "col_name": info.col_name,
            "semi": {
                "rows": semi_rows,
                "cols": ints(matching.semi_cols),
                "corr": responses.json_numbers(semi_corr, null=True),
                "sorted": responses.json_numbers(_sorted_descending(semi_corr), null=True),
                "mean": responses.json_number(matching.semi_mean, null=True),
            },
            "bipartite": {
                "rows": ints(matching.bipartite_rows),
                "cols": ints(matching.bipartite_cols),
                "corr": responses.json_numbers(bip_corr, null=True),
                "sorted": responses.json_numbers(_sorted_descending(bip_corr), null=True),
                "mean": responses.json_number(matching.bipartite_mean, null=True),
            },
        }
        return responses.respond_json(request, body)

    @werkzeug.wrappers.Request.application
    def _serve_channels(self, request):
        example = "correlation_channels?run=RUN&tag=TAG"
        run, tag, ctx, experiment, info = self._series(request, example)
        step = self._read(ctx, experiment, run, tag, info, responses.int_arg(request, "step"))
        n_rows, n_cols = step.matrix.shape
        body = {
            "run": run,
            "tag": tag,
            "step": step.step,
            "wall_time": step.wall_time,
            **_sampling_json(step, info),
            "cross": bool(info.cross),
            "redundant_fraction": responses.json_number(step.message.redundant_fraction, null=True),
            "rows": _stats_json(step.message.row_stats, n_rows),
            "cols": _stats_json(step.message.col_stats, n_cols) if info.cross else None,
        }
        return responses.respond_json(request, body)


def _sampling_json(step: _Step, info: pb.CorrelationInfo) -> dict:
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


def _window(request, axis: str, length: int) -> tuple[int, int]:
    """The half-open position range [axis_start, axis_end) of the window, checked."""
    start = responses.int_arg(request, f"{axis}_start", 0, minimum=0)
    end = responses.int_arg(request, f"{axis}_end", length, minimum=1)
    if not start < end <= length:
        raise errors.InvalidArgumentError(
            f"{axis}_start={start}, {axis}_end={end} is not a window of the matrix's "
            f"{length} {axis}s: need 0 <= {axis}_start < {axis}_end <= {length}"
        )
    return start, end
