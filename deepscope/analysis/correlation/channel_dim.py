"""Which dimension of a layer's activations holds its channels: the one rule deepscope uses.

Conv-shaped outputs (N, C, H, W, …), 4 or more dimensions, at dim 1; (N, C)
and sequence outputs (N, L, C) (transformers, RNNs with batch_first, Linear
layers on sequences) at the last dim. Three dimensions are ambiguous: a
Conv1d output is (N, C, L). Where the module is known,
`is_channels_first_module` decides: Conv1d, ConvTranspose1d, BatchNorm1d,
InstanceNorm1d, GroupNorm, the 1-d pools, pads and Dropout1d put channels at
dim 1. Every other position is a sample: (N, L, C) gives N·L samples.
"""

from __future__ import annotations

import torch

_CHANNELS_FIRST_MODULES = tuple(
    getattr(torch.nn, name)
    for name in (
        "Conv1d",
        "ConvTranspose1d",
        "LazyConv1d",
        "LazyConvTranspose1d",
        "BatchNorm1d",
        "LazyBatchNorm1d",
        "SyncBatchNorm",
        "InstanceNorm1d",
        "LazyInstanceNorm1d",
        "GroupNorm",
        "MaxPool1d",
        "AvgPool1d",
        "LPPool1d",
        "AdaptiveMaxPool1d",
        "AdaptiveAvgPool1d",
        "MaxUnpool1d",
        "ConstantPad1d",
        "ReflectionPad1d",
        "ReplicationPad1d",
        "ZeroPad1d",
        "CircularPad1d",
        "Dropout1d",
    )
    if hasattr(torch.nn, name)
)


def is_channels_first_module(module: object) -> bool:
    """Whether `module`'s 3-d outputs are (N, C, L): the torch 1-d conv, norm, pool and pad layers.

    By the module's own class: a container ending in a Conv1d is not known
    to be channels-first (give its dim explicitly). Hugging Face's GPT-2
    `Conv1D` is a linear layer, channels-last, and is not one of them.
    """
    return isinstance(module, _CHANNELS_FIRST_MODULES)


def default_channel_dim(ndim: int, channels_first: bool = False) -> int:
    """The channel dimension of an activation with `ndim` dimensions (non-negative).

    4 or more (N, C, H, W, …): 1. Two (N, C): 1. Three: 2, (N, L, C), the
    last; 1 when `channels_first` (a Conv1d-like module's (N, C, L)).

    Raises:
      ValueError: fewer than 2 dimensions (no sample dimension).
    """
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 2:
        raise ValueError(
            f"activations need at least 2 dimensions (samples, channels), got ndim={ndim!r}"
        )
    if ndim >= 4 or (ndim == 3 and channels_first):
        return 1
    return ndim - 1
