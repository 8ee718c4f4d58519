"""Channel-correlation summaries: the plain builder and the SummaryWriter method.

Each logged step is a blob sequence of one blob, a serialized
`CorrelationStep`: the Pearson matrix (float16 by default, 2 bytes a cell:
512 channels take 0.5 MiB; or 8-bit over [-1, 1], 1 byte a cell), the
per-channel statistics, for cross-network series the semi- and bipartite
matching, and the fraction of redundant channels. The series' constant facts
(`CorrelationInfo`: cross or not, channel_dim, the two sides' names) go in the
metadata of the tag's first event.
"""

from __future__ import annotations

import numpy as np
import torch
from tensorboard.compat.proto import summary_pb2

from deepscope.analysis import matching as matching_math
from deepscope.analysis.correlation import (
    ChannelCorrelation,
    ChannelStatistics,
    CorrelationAccumulator,
)
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer import summary

MATRIX_DTYPES = ("float16", "uint8")
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


def correlation_step(
    result: ChannelCorrelation, matrix_dtype: str = "float16"
) -> pb.CorrelationStep:
    """One step's `CorrelationStep` from an accumulator's result.

    Cross-network results also get col_stats and the matching (computed here);
    redundant_fraction is that of the rows' layer (its within-layer matrix).
    """
    step = pb.CorrelationStep(
        matrix=encode_correlation_matrix(result.matrix, matrix_dtype),
        samples=result.samples,
        row_stats=channel_stats_pb(result.rows),
        redundant_fraction=matching_math.redundant_fraction(result.within_rows),
    )
    if result.cross:
        step.col_stats.CopyFrom(channel_stats_pb(result.cols))
        step.matching.CopyFrom(matching_pb(matching_math.match_channels(result.matrix)))
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


def correlation_result(
    activations: torch.Tensor | CorrelationAccumulator | ChannelCorrelation,
    other: torch.Tensor | None = None,
    channel_dim: int = 1,
    other_channel_dim: int | None = None,
) -> tuple[ChannelCorrelation, int]:
    """Correlations of a batch (or of a filled accumulator, or a result as is), and the channel_dim.

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
    channel_dim = accumulator.channel_dim
    if channel_dim < 0 and accumulator.ndim is not None:
        channel_dim %= accumulator.ndim
    return accumulator.compute(), channel_dim


def channel_correlation_pb(
    tag: str,
    activations: torch.Tensor | CorrelationAccumulator | ChannelCorrelation,
    other: torch.Tensor | None = None,
    channel_dim: int = 1,
    other_channel_dim: int | None = None,
    matrix_dtype: str = "float16",
    row_name: str = "",
    col_name: str = "",
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` with one step of channel correlations, its metadata included.

    Args:
      tag: the series' name, e.g. "conv2" or "conv2/a-vs-b".
      activations: a layer's activations, e.g. (N, C) or (N, C, H, W) (every
        input and spatial position is a sample); or a filled
        `CorrelationAccumulator`, or its `compute()` result.
      other: another network's activations of the same inputs, for the cross
        matrix [Ca, Cb] and its matching.
      channel_dim, other_channel_dim: the channel dimension of each.
      matrix_dtype: "float16" (default) or "uint8" (8-bit over [-1, 1]).
      row_name, col_name: names of the two sides, e.g. "net_a/conv2".
      description: shown by TensorBoard next to the tag.
    """
    result, channel_dim = correlation_result(activations, other, channel_dim, other_channel_dim)
    step = correlation_step(result, matrix_dtype)
    plugin_data = correlation_plugin_data(result.cross, channel_dim, row_name, col_name)
    return summary.blob_sequence_summary(tag, [step.SerializeToString()], plugin_data, description)


class CorrelationSummaries:
    """Mixin of `deepscope.SummaryWriter`: the channel-correlation `add_*` method."""

    def add_channel_correlation(
        self,
        tag: str,
        activations: torch.Tensor | CorrelationAccumulator | ChannelCorrelation,
        other: torch.Tensor | None = None,
        global_step: int | None = None,
        walltime: float | None = None,
        channel_dim: int = 1,
        other_channel_dim: int | None = None,
        matrix_dtype: str = "float16",
        row_name: str = "",
        col_name: str = "",
        description: str = "",
    ) -> None:
        """Log one step of a layer's channel correlations (or two networks' cross correlations).

        Args:
          tag: the series, e.g. "conv2" or "conv2/a-vs-b".
          activations: (N, C), (N, C, H, W) or any layout with `channel_dim`;
            every input and spatial position is one sample. Or a filled
            `CorrelationAccumulator` (to log statistics streamed over many
            batches), or its `compute()` result.
          other: another network's activations of the same inputs: the step
            then holds the cross matrix [Ca, Cb] with semi- and bipartite matching.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          channel_dim, other_channel_dim: the channel dimension of each tensor.
          matrix_dtype: "float16" (default, 2 bytes a cell) or "uint8" (1 byte a
            cell, steps of 1/127 over [-1, 1]).
          row_name, col_name: names of the two sides, kept in the series' metadata.
          description: shown next to the tag.

        NaN/Inf activations are left out (the whole sample position) and
        counted in the step's statistics; dead channels are marked.
        """
        result, channel_dim = correlation_result(activations, other, channel_dim, other_channel_dim)
        step = correlation_step(result, matrix_dtype)
        plugin_data = None
        if self._first_event(tag):
            plugin_data = correlation_plugin_data(result.cross, channel_dim, row_name, col_name)
        self._write(
            summary.blob_sequence_summary(
                tag, [step.SerializeToString()], plugin_data, description
            ),
            global_step,
            walltime,
        )
