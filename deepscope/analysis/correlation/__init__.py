"""Channel correlations of a layer's activations, streamed over batches.

As in Li et al., *Convergent Learning* (ICLR 2016), every input and every
spatial position is one sample of a layer's C channels: activations of shape
(N, C, H, W) give N·H·W samples of C values. Which dimension holds the
channels is `default_channel_dim` (the one rule the writer, `watch()` and
`compare()` use unless told otherwise).

One job per module:

- `channel_dim`: which dimension holds the channels.
- `accumulator`: `CorrelationAccumulator`, the public streaming accumulator.
- `sums`: sums about a shift and the exact algebra that moves and merges them.
- `buffer_plan`: how batches of one shape are read and the buffers they go to.
- `batch_sums`: one batch's sums, by `clean_path` (the CPU's, for finite
  values) or `masked_path` (CUDA, and batches with NaN/Inf).
- `gram`: the Gram products (half precision into float32).
- `pearson`: statistics, dead channels and Pearson correlations from the moments.
- `results`: `ChannelStatistics` and `ChannelCorrelation`, what `compute()` returns.

Non-finite activations: a sample position holding any NaN or ±Inf in any
channel, of either stream, is left out of every statistic; the non-finite
values are counted per stream. Non-finite is not dead: a channel left with
no finite samples has NaN mean and std (unknown) and is not dead.
"""

from deepscope.analysis.correlation.accumulator import CorrelationAccumulator
from deepscope.analysis.correlation.channel_dim import (
    default_channel_dim,
    is_channels_first_module,
)
from deepscope.analysis.correlation.pearson import dead_rtol
from deepscope.analysis.correlation.results import ChannelCorrelation, ChannelStatistics

__all__ = [
    "ChannelCorrelation",
    "ChannelStatistics",
    "CorrelationAccumulator",
    "dead_rtol",
    "default_channel_dim",
    "is_channels_first_module",
]
