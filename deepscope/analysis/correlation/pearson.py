"""From moments to per-channel statistics, dead channels, and Pearson correlations.

Dead channels: a channel whose variance is zero up to the resolution of its
dtype — std ≤ |mean|·eps/8, eps the machine epsilon of the activations' dtype
(float16 and bfloat16 their own, not float32's) — is reported as dead; its
correlations are 0, never NaN. A constant channel (0.1 in float32) has std 0
or a tiny fraction of one unit in the last place (x − s is exact for values
near the shift), so it is dead; a channel whose values differ by more than
an eighth of a unit in the last place (1000 ± 0.005 in float32: ~40 units)
is alive.

Non-finite is not dead: a channel with no finite samples (every sample
position held a NaN or ±Inf) has unknown statistics: its mean, std and
positive fraction are NaN, it is not dead, and its correlations are 0.
"""

from __future__ import annotations

import numpy as np
import torch

from deepscope.analysis.correlation.results import ChannelStatistics
from deepscope.analysis.correlation.sums import Moments

# A channel is dead when std <= |mean| * eps(dtype) * _DEAD_ULP_FRACTION: below an
# eighth of a unit in the last place at the channel's magnitude. A constant
# channel's rounding noise is far smaller (x - s is exact near the shift; what is
# left is ~sqrt(eps) of one unit), a channel that takes two neighbouring values
# has std >= a quarter unit when they are equally common.
_DEAD_ULP_FRACTION = 0.125


def dead_rtol(dtype: torch.dtype) -> float:
    """The relative std (std / |mean|) at or below which a channel of `dtype` is dead."""
    return float(torch.finfo(dtype).eps) * _DEAD_ULP_FRACTION


def channel_statistics(
    moments: Moments, count: float, dead_rtol: float
) -> tuple[ChannelStatistics, torch.Tensor]:
    """Host statistics, and 1/√(Σ(x−x̄)²) per channel for the Pearson scale.

    The scale is 0 for dead channels, for channels whose sums overflowed and
    when no finite sample is left (so their correlations come out 0, never
    NaN). With no finite sample (count 0) nothing is known: mean, std and
    positive fraction are NaN and no channel is dead.
    """
    squares = torch.diagonal(moments.comoment).clamp(min=0.0)
    divisor = max(count, 1.0)
    std = torch.sqrt(squares / divisor)
    overflow = ~torch.isfinite(moments.mean) | ~torch.isfinite(squares)
    if count == 0:  # every sample position held a NaN/Inf: unknown, not dead
        unknown = torch.full_like(std, float("nan"))
        stats = ChannelStatistics(
            mean=unknown.cpu().numpy(),
            std=unknown.cpu().numpy(),
            positive_fraction=unknown.cpu().numpy(),
            dead=np.zeros(std.shape, dtype=bool),
            non_finite=int(moments.non_finite.item()),
            overflow=np.zeros(std.shape, dtype=bool),
        )
        return stats, torch.zeros_like(squares)
    dead = (std <= dead_rtol * moments.mean.abs()) & ~overflow
    unusable = dead | overflow
    scale = torch.where(unusable, torch.zeros_like(squares), torch.rsqrt(squares.clamp(min=1e-300)))
    scale = torch.nan_to_num(scale, nan=0.0, posinf=0.0)
    std = torch.where(dead, torch.zeros_like(std), std)
    stats = ChannelStatistics(
        mean=moments.mean.cpu().numpy().copy(),
        std=std.cpu().numpy(),
        positive_fraction=(moments.positives / divisor).cpu().numpy(),
        dead=dead.cpu().numpy(),
        non_finite=int(moments.non_finite.item()),
        overflow=overflow.cpu().numpy(),
    )
    return stats, scale


def pearson(
    comoment: torch.Tensor, scale_rows: torch.Tensor, scale_cols: torch.Tensor, diagonal: bool
) -> np.ndarray:
    """Co-moments scaled to Pearson correlations, clipped to [-1, 1]; float64 numpy.

    Pairs with an unusable channel (scale 0) are 0 whatever their co-moment.
    """
    usable = (scale_rows[:, None] > 0) & (scale_cols[None, :] > 0)
    matrix = comoment * scale_rows[:, None] * scale_cols[None, :]
    matrix = torch.where(usable, torch.nan_to_num(matrix, nan=0.0), torch.zeros_like(matrix))
    matrix = matrix.clamp(-1.0, 1.0)
    if diagonal:
        matrix.diagonal().copy_((scale_rows > 0).to(matrix.dtype))
    return matrix.cpu().numpy()
