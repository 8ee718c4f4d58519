"""What a correlation accumulator returns: per-channel statistics and the matrices (host numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChannelStatistics:
    """Per-channel statistics of one stream; arrays of shape [C], float64.

    std is the population standard deviation (divides by the sample count);
    positive_fraction the fraction of samples > 0; mean, std and
    positive_fraction are NaN (unknown) when no finite sample position is
    left. dead a bool mask [C] of channels of zero variance over the finite
    samples (a channel without finite samples is not dead); non_finite the
    NaN/Inf values seen (left out, with their whole sample position);
    overflow a bool mask [C] of channels whose sums overflowed (finite
    activations too large for their dtype's products, ~1e19 in float32, as in
    a diverging network): their statistics mean nothing and their
    correlations are 0.
    """

    mean: np.ndarray
    std: np.ndarray
    positive_fraction: np.ndarray
    dead: np.ndarray
    non_finite: int
    overflow: np.ndarray

    @property
    def dead_indices(self) -> np.ndarray:
        """Indices of dead channels, int64 [D]."""
        return np.flatnonzero(self.dead)


@dataclass(frozen=True)
class ChannelCorrelation:
    """What an accumulator holds, on the host.

    matrix: Pearson correlations, [C, C] within a layer or [Ca, Cb] across
      two streams (`cross`); rows and columns of dead channels are 0 (also on
      the diagonal), alive channels have 1 on the within-layer diagonal.
    within_rows / within_cols: the within-layer matrices of each stream
      (within_cols is None unless cross; within_rows is `matrix` when not).
    rows / cols: per-channel statistics of each stream (cols is None unless cross).
    samples: sample positions the statistics cover (non-finite ones left out).
    channel_dim: the channel dimension of the rows' activations (non-negative);
      None when not known (a result built by hand).
    activation_shape: the shape of the first batch of the rows' activations,
      e.g. (N, L, C); None when not known.
    """

    matrix: np.ndarray
    within_rows: np.ndarray
    within_cols: np.ndarray | None
    rows: ChannelStatistics
    cols: ChannelStatistics | None
    samples: int
    cross: bool
    channel_dim: int | None = None
    activation_shape: tuple[int, ...] | None = None
