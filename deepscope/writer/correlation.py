"""Channel-correlation summaries: the plain builder and the SummaryWriter method.

Each logged step is a blob sequence of one blob, a serialized
`CorrelationStep`: the Pearson matrix (float16 by default, 2 bytes a cell:
512 channels take 0.5 MiB, a 3072-channel MLP activation 18.9 MB; or 8-bit
over [-1, 1], 1 byte a cell; within a layer optionally only its upper
triangle, `packing="upper_triangle"`, half of that: 3072 channels in 4.7 MB
with uint8), the per-channel statistics, the activation shape, for
cross-network series the semi- and bipartite matching (and, from compare(),
Li et al.'s regression of each row channel and the pair's CKA:
`CrossNetworkFit`, 16 bytes a row channel), and the fraction of redundant
channels. The series' constant facts (`CorrelationInfo`: cross or
not, channel_dim, the two sides' names) go in the metadata of the tag's first
event.

Channels are found by `deepscope.analysis.correlation.default_channel_dim`
unless `channel_dim` says otherwise: dim 1 of (N, C, H, W, …), the last dim of
(N, C) and (N, L, C).
"""

from __future__ import annotations

import numpy as np
import torch
from tensorboard.compat.proto import summary_pb2

from deepscope.analysis import channel_regression as regression_math
from deepscope.analysis import matching as matching_math
from deepscope.analysis.correlation import (
    ChannelCorrelation,
    ChannelStatistics,
    CorrelationAccumulator,
)
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer import summary
from deepscope.writer.hook_warnings import warn_from_hook

MATRIX_DTYPES = ("float16", "uint8")
PACKINGS = ("full", "upper_triangle")
# UINT8_LINEAR over [-1, 1]: ρ = -1 + q/127, q in 0..254, so that 0 is exact.
_UINT8_STEPS = 127


def encode_correlation_matrix(matrix: np.ndarray, matrix_dtype: str = "float16") -> pb.Array:
    """A correlation matrix as an `Array`: FLOAT16, or UINT8_LINEAR over [-1, 1] ("uint8").

    "uint8" keeps ρ to ±1/254 (steps of 1/127, 0 exact) at 1 byte a cell;
    float16 keeps ~3 significant digits at 2 bytes a cell.
    """
    if matrix_dtype not in MATRIX_DTYPES:
        raise ValueError(f"matrix_dtype must be one of {MATRIX_DTYPES}, got {matrix_dtype!r}")
    values = np.clip(np.asarray(matrix, dtype=np.float64), -1.0, 1.0)
    if matrix_dtype == "float16":
        return arrays.encode_array(values.astype(np.float16))
    quantized = np.rint((values + 1.0) * _UINT8_STEPS).astype(np.uint8)
    return pb.Array(
        shape=values.shape,
        dtype=pb.UINT8_LINEAR,
        data=quantized.tobytes(),
        scale=1.0 / _UINT8_STEPS,
        offset=-1.0,
    )


def _check_packing(packing: str, matrix_dtype: str) -> None:
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
    if matrix_dtype not in MATRIX_DTYPES:
        raise ValueError(f"matrix_dtype must be one of {MATRIX_DTYPES}, got {matrix_dtype!r}")


def upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """The upper triangle of a square [C, C] matrix with its diagonal, row by row: [C(C+1)/2]."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the upper triangle needs a square matrix, got {list(matrix.shape)}")
    return matrix[np.triu_indices(matrix.shape[0])]


def encode_matrix(
    matrix: np.ndarray, matrix_dtype: str = "float16", packing: str = "full"
) -> tuple[pb.Array, int]:
    """A matrix as an `Array` and its `MatrixPacking`: whole, or its upper triangle.

    "upper_triangle" (within a layer, symmetric [C, C]) keeps C(C+1)/2 cells:
    combined with matrix_dtype "uint8" a quarter of the float16 default.
    """
    _check_packing(packing, matrix_dtype)
    if packing == "upper_triangle":
        return encode_correlation_matrix(upper_triangle(matrix), matrix_dtype), pb.UPPER_TRIANGLE
    return encode_correlation_matrix(matrix, matrix_dtype), pb.FULL


def step_bytes(channels: int, matrix_dtype: str = "float16", packing: str = "full") -> int:
    """Bytes of the matrix of one logged step of a `channels`-channel layer (within-layer)."""
    _check_packing(packing, matrix_dtype)
    cells = channels * (channels + 1) // 2 if packing == "upper_triangle" else channels**2
    return cells * (2 if matrix_dtype == "float16" else 1)


def channel_stats_pb(stats: ChannelStatistics) -> pb.ChannelStats:
    """Per-channel statistics as a `ChannelStats` message (float32 arrays)."""
    return pb.ChannelStats(
        mean=arrays.encode_array(stats.mean.astype(np.float32)),
        std=arrays.encode_array(stats.std.astype(np.float32)),
        positive_fraction=arrays.encode_array(stats.positive_fraction.astype(np.float32)),
        dead=[int(i) for i in stats.dead_indices],
        non_finite=int(stats.non_finite),
    )


def matching_pb(result: matching_math.ChannelMatching) -> pb.Matching:
    """Semi- and bipartite matching as a `Matching` message."""
    return pb.Matching(
        semi_cols=arrays.encode_array(result.semi_cols.astype(np.int32)),
        semi_corr=arrays.encode_array(result.semi_corr.astype(np.float32)),
        bipartite_rows=arrays.encode_array(result.bipartite_rows.astype(np.int32)),
        bipartite_cols=arrays.encode_array(result.bipartite_cols.astype(np.int32)),
        bipartite_corr=arrays.encode_array(result.bipartite_corr.astype(np.float32)),
        semi_mean=result.semi_mean,
        bipartite_mean=result.bipartite_mean,
    )


def cross_network_fit_pb(
    regression: regression_math.ChannelRegression | None,
    cka: float = float("nan"),
    predictors: int = 0,
    keep: float = regression_math.DEFAULT_KEEP,
) -> pb.CrossNetworkFit:
    """Li et al.'s regression of a layer pair and its CKA as a `CrossNetworkFit` message.

    regression: `deepscope.analysis.channel_regression.channel_regression`'s
      result for the rows' channels (None: only the CKA is stored, the arrays
      stay empty); float32 errors and α, int32 channel counts: 16 bytes a row
      channel.
    cka: the pair's linear CKA; predictors: the B channels usable as
      predictors; keep: the α rule's share of the least-squares explained variance.
    """
    fit = pb.CrossNetworkFit(
        cka=float(cka),
        keep=float(keep),
        path_factor=regression_math.PATH_FACTOR,
        predictors=int(predictors),
        mean_least_squares_error=float("nan"),
        mean_l1_error=float("nan"),
        mean_l1_channels=float("nan"),
    )
    if regression is not None:
        fit.least_squares_error.CopyFrom(
            arrays.encode_array(np.asarray(regression.least_squares_error, np.float32))
        )
        fit.l1_error.CopyFrom(arrays.encode_array(np.asarray(regression.l1_error, np.float32)))
        fit.l1_channels.CopyFrom(arrays.encode_array(np.asarray(regression.l1_channels, np.int32)))
        fit.l1_alpha.CopyFrom(arrays.encode_array(np.asarray(regression.l1_alpha, np.float32)))
        fit.mean_least_squares_error = float(regression.mean_least_squares_error)
        fit.mean_l1_error = float(regression.mean_l1_error)
        fit.mean_l1_channels = float(regression.mean_l1_channels)
    return fit


def correlation_step(
    result: ChannelCorrelation,
    matrix_dtype: str = "float16",
    packing: str = "full",
    cross_network: pb.CrossNetworkFit | None = None,
    matching: matching_math.ChannelMatching | None = None,
) -> pb.CorrelationStep:
    """One step's `CorrelationStep` from an accumulator's result.

    Cross-network results also get col_stats and the matching (computed here);
    redundant_fraction is that of the rows' layer (its within-layer matrix).
    packing "upper_triangle" is for within-layer results only. cross_network
    (`cross_network_fit_pb`, compare()'s regression and CKA) is for cross
    results, with one value per row channel. matching: a cross result's
    matching when the caller already has it (compare() does), else computed.

    Raises:
      ValueError: unknown matrix_dtype or packing, a packed cross result, or
        a cross_network fit for a within-layer result or of another row count.
    """
    _check_packing(packing, matrix_dtype)
    if packing == "upper_triangle" and result.cross:
        raise ValueError(
            'packing="upper_triangle" is for within-layer matrices (symmetric); a '
            'cross-network matrix [Ca, Cb] is stored whole: use packing="full"'
        )
    matrix, packed = encode_matrix(result.matrix, matrix_dtype, packing)
    step = pb.CorrelationStep(
        matrix=matrix,
        samples=result.samples,
        row_stats=channel_stats_pb(result.rows),
        redundant_fraction=matching_math.redundant_fraction(result.within_rows),
        packing=packed,
    )
    if result.activation_shape is not None:
        step.activation_shape.extend(int(n) for n in result.activation_shape)
    if result.cross:
        step.col_stats.CopyFrom(channel_stats_pb(result.cols))
        if matching is None:
            matching = matching_math.match_channels(result.matrix)
        step.matching.CopyFrom(matching_pb(matching))
    elif matching is not None:
        raise ValueError(
            "matching (two networks' channels paired) needs a cross-network result: give "
            "other= (the second network's activations)"
        )
    if cross_network is not None:
        if not result.cross:
            raise ValueError(
                "cross_network (the regression and CKA of two networks' layers) needs a "
                "cross-network result: give other= (the second network's activations)"
            )
        rows = result.matrix.shape[0]
        for name in ("least_squares_error", "l1_error", "l1_channels", "l1_alpha"):
            shape = list(getattr(cross_network, name).shape)
            if shape and shape != [rows]:
                raise ValueError(
                    f"cross_network.{name} has shape {shape}, the matrix has {rows} rows"
                )
        step.cross_network.CopyFrom(cross_network)
    return step


def correlation_plugin_data(
    cross: bool, channel_dim: int, row_name: str = "", col_name: str = ""
) -> pb.PluginData:
    """The series' metadata: a `PluginData` of kind CORRELATION."""
    return pb.PluginData(
        kind=pb.CORRELATION,
        correlation=pb.CorrelationInfo(
            cross=bool(cross),
            channel_dim=int(channel_dim),
            row_name=row_name,
            col_name=col_name,
        ),
    )


def few_samples_message(tag: str, result: ChannelCorrelation) -> str | None:
    """A warning when a step has no more samples than channels (rank-deficient), else None.

    No sample at all (every position held a NaN/Inf) gets its own message.

    Centred on their means, S samples span at most S − 1 dimensions: with
    S ≤ C the C × C matrix has rank < C and many of its |ρ| near 1 are an
    artifact of too few samples, not redundant channels.
    """
    channels = max(result.matrix.shape)
    if result.samples > channels:
        return None
    if result.samples == 0:
        non_finite = result.rows.non_finite + (0 if result.cols is None else result.cols.non_finite)
        return (
            f"deepscope: correlation tag {tag!r}: no finite sample position ({non_finite} NaN/Inf "
            "activation values; a position with one in any channel is left out), so nothing is "
            "known about its channels (mean and std are NaN, none is dead); check the layer's "
            "inputs and weights for NaN/Inf"
        )
    return (
        f"deepscope: correlation tag {tag!r}: {result.samples} samples for {channels} channels, "
        f"so the matrix has rank at most {max(result.samples - 1, 0)}: its correlations "
        "reflect too few samples, not the channels; give more probe inputs (every input and "
        "position is a sample)"
    )


def correlation_result(
    activations: torch.Tensor | CorrelationAccumulator | ChannelCorrelation,
    other: torch.Tensor | None = None,
    channel_dim: int | None = None,
    other_channel_dim: int | None = None,
) -> tuple[ChannelCorrelation, int]:
    """Correlations of a batch (or of a filled accumulator, or a result as is), and the channel_dim.

    channel_dim None: by `default_channel_dim` for a batch, the accumulator's
    or the result's own otherwise.

    Raises:
      ValueError/TypeError: bad activations (see `CorrelationAccumulator.update`),
        `other` given with an accumulator or result, or an empty accumulator.
    """
    if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
        raise TypeError(
            f"other must be the other network's activations (a tensor), got the number {other}: "
            "to give the step, write global_step=..., e.g. "
            "add_channel_correlation(tag, activations, global_step=step)"
        )
    if isinstance(activations, (CorrelationAccumulator, ChannelCorrelation)):
        if other is not None:
            raise ValueError(
                "other must be None when activations is a CorrelationAccumulator or a "
                "ChannelCorrelation: feed the second stream to the accumulator's update()"
            )
        if isinstance(activations, ChannelCorrelation):
            if channel_dim is None:
                channel_dim = activations.channel_dim
            if channel_dim is None:
                raise ValueError(
                    "this ChannelCorrelation does not say its channel_dim: give channel_dim="
                )
            if channel_dim < 0:
                raise ValueError(
                    "with a ChannelCorrelation give channel_dim as a non-negative index, "
                    f"got {channel_dim} (the series' metadata records it)"
                )
            return activations, channel_dim
        accumulator = activations
    else:
        accumulator = CorrelationAccumulator(channel_dim, other_channel_dim)
        accumulator.update(activations, other)
    result = accumulator.compute()
    return result, result.channel_dim


def channel_correlation_pb(
    tag: str,
    activations: torch.Tensor | CorrelationAccumulator | ChannelCorrelation,
    other: torch.Tensor | None = None,
    channel_dim: int | None = None,
    other_channel_dim: int | None = None,
    matrix_dtype: str = "float16",
    row_name: str = "",
    col_name: str = "",
    description: str = "",
    packing: str = "full",
    cross_network: pb.CrossNetworkFit | None = None,
    matching: matching_math.ChannelMatching | None = None,
) -> summary_pb2.Summary:
    """A `Summary` with one step of channel correlations, its metadata included.

    Args:
      tag: the series' name, e.g. "conv2" or "conv2/a-vs-b".
      activations: a layer's activations, e.g. (N, C), (N, L, C) or
        (N, C, H, W) (every input and position is a sample); or a filled
        `CorrelationAccumulator`, or its `compute()` result.
      other: another network's activations of the same inputs, for the cross
        matrix [Ca, Cb] and its matching.
      channel_dim, other_channel_dim: the channel dimension of each; None:
        dim 1 of (N, C, H, W, …), the last of (N, C) and (N, L, C).
      matrix_dtype: "float16" (default) or "uint8" (8-bit over [-1, 1]).
      packing: "full" (default) or "upper_triangle" (within a layer: half the bytes).
      row_name, col_name: names of the two sides, e.g. "net_a/conv2".
      description: shown by TensorBoard next to the tag.
      cross_network: a cross step's regression and CKA (`cross_network_fit_pb`),
        as compare() logs them.
      matching: a cross step's `ChannelMatching` when already computed
        (compare()'s); None: computed here.
    """
    _check_packing(packing, matrix_dtype)
    result, channel_dim = correlation_result(activations, other, channel_dim, other_channel_dim)
    step = correlation_step(result, matrix_dtype, packing, cross_network, matching)
    plugin_data = correlation_plugin_data(result.cross, channel_dim, row_name, col_name)
    return summary.blob_sequence_summary(tag, [step.SerializeToString()], plugin_data, description)


class CorrelationSummaries:
    """Mixin of `deepscope.SummaryWriter`: the channel-correlation `add_*` method.

    Needs the writer core's `_write`.
    """

    def add_channel_correlation(
        self,
        tag: str,
        activations: torch.Tensor | CorrelationAccumulator | ChannelCorrelation,
        other: torch.Tensor | None = None,
        global_step: int | None = None,
        walltime: float | None = None,
        channel_dim: int | None = None,
        other_channel_dim: int | None = None,
        matrix_dtype: str = "float16",
        row_name: str = "",
        col_name: str = "",
        description: str = "",
        packing: str = "full",
        cross_network: pb.CrossNetworkFit | None = None,
        matching: matching_math.ChannelMatching | None = None,
    ) -> None:
        """Log one step of a layer's channel correlations (or two networks' cross correlations).

        Args:
          tag: the series, e.g. "conv2" or "conv2/a-vs-b".
          activations: (N, C), (N, L, C), (N, C, H, W) or any layout with
            `channel_dim`; every input and position is one sample. Or a filled
            `CorrelationAccumulator` (to log statistics streamed over many
            batches), or its `compute()` result.
          other: another network's activations of the same inputs: the step
            then holds the cross matrix [Ca, Cb] with semi- and bipartite matching.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          channel_dim, other_channel_dim: the channel dimension of each tensor;
            None (default): dim 1 of (N, C, H, W, …), the last of (N, C) and (N, L, C).
          matrix_dtype: "float16" (default, 2 bytes a cell) or "uint8" (1 byte a
            cell, steps of 1/127 over [-1, 1]).
          packing: "full" (default) or "upper_triangle": within a layer only the
            upper triangle with the diagonal, half the bytes (with "uint8" a
            quarter of the default: 4.7 MB instead of 18.9 MB at 3072 channels).
          row_name, col_name: names of the two sides, kept in the series' metadata.
          description: shown next to the tag.
          cross_network: for a cross step, each row channel predicted from the
            columns' channels and the pair's CKA (`cross_network_fit_pb`; what
            `deepscope.compare` logs).
          matching: for a cross step, its `ChannelMatching`
            (`analysis.matching.match_channels`) when already computed (compare()
            passes its own); None: computed here.

        NaN/Inf activations are left out (the whole sample position) and
        counted in the step's statistics; dead channels are marked. With no
        finite position left the statistics are NaN (unknown) and no channel
        is dead (non-finite is not dead). A step
        with no more samples than channels (a rank-deficient matrix) warns,
        once per tag.
        """
        _check_packing(packing, matrix_dtype)  # before the work
        result, channel_dim = correlation_result(activations, other, channel_dim, other_channel_dim)
        message = few_samples_message(tag, result)
        warned = self.__dict__.setdefault("_correlation_few_samples_warned", set())
        if message is not None and tag not in warned:
            warned.add(tag)
            warn_from_hook(message, stacklevel=2)
        summary_pb = channel_correlation_pb(
            tag,
            result,
            channel_dim=channel_dim,
            matrix_dtype=matrix_dtype,
            row_name=row_name,
            col_name=col_name,
            description=description,
            packing=packing,
            cross_network=cross_network,
            matching=matching,
        )
        self._write(summary_pb, global_step, walltime)
