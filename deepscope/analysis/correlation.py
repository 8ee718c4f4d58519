"""Channel correlations of a layer's activations, streamed over batches.

As in Li et al., *Convergent Learning* (ICLR 2016), every input and every
spatial position is one sample of a layer's C channels: activations of shape
(N, C, H, W) give N·H·W samples of C values.

Which dimension holds the channels (`default_channel_dim`, the one rule the
writer, `watch()` and `compare()` use unless told otherwise): conv-shaped
outputs (N, C, H, W, …), 4 or more dimensions, at dim 1; (N, C) and sequence
outputs (N, L, C) (transformers, RNNs with batch_first, Linear layers on
sequences) at the last dim. Three dimensions are ambiguous: a Conv1d output is
(N, C, L). Where the module is known, `is_channels_first_module` decides:
Conv1d, ConvTranspose1d, BatchNorm1d, InstanceNorm1d, GroupNorm, the 1-d
pools, pads and Dropout1d put channels at dim 1. Every other position is a
sample: (N, L, C) gives N·L samples. `CorrelationAccumulator` keeps,
per channel, the sample count, the sums Σ(x−s) and Σ(x−s)(x−s)ᵀ about a
per-channel shift s close to the mean, and the count of positive values, all
in float64: the means and co-moments follow exactly, and accumulators merge
exactly (moving sums from one shift to another is exact algebra). Fed a second
stream (another network's activations on the same inputs) it also keeps the
cross sums, for the Ca×Cb matrix.

Cost per batch on the CPU: one pass writes x − s (s: the first batch's mean,
rounded to the activations' dtype) into a kept buffer laid out for the Gram
product, chunk by chunk; while a chunk is in cache it is summed (Σ(x−s)) and
compared with 0 (positives). One Gram product (x−s)ᵀ(x−s) in the activations'
dtype (float16 and bfloat16 widened to float32) follows, and the batch's sums
are added to the float64 ones as they are. One host check catches NaN/Inf, and
a batch whose mean has drifted from s by more than its spread (where the
float32 product would lose precision): such a batch is redone about its own
mean. On CUDA every batch is shifted by its own mean, with no host
synchronisation in `update`.

Non-finite activations: a sample position (one input at one spatial position)
holding any NaN or ±Inf in any channel, of either stream, is left out of every
statistic; the non-finite values are counted per stream.

Dead channels: a channel whose variance is zero up to the resolution of its
dtype — std ≤ |mean|·eps/8, eps the machine epsilon of the activations' dtype
(float16 and bfloat16 their own, not float32's) — is reported as dead; its
correlations are 0, never NaN. A constant channel (0.1 in float32) has std 0
or a tiny fraction of one unit in the last place (x − s is exact for values
near the shift), so it is dead; a channel whose values differ by more than
an eighth of a unit in the last place (1000 ± 0.005 in float32: ~40 units)
is alive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_HALF = (torch.float16, torch.bfloat16)
# A channel is dead when std <= |mean| * eps(dtype) * _DEAD_ULP_FRACTION: below an
# eighth of a unit in the last place at the channel's magnitude. A constant
# channel's rounding noise is far smaller (x - s is exact near the shift; what is
# left is ~sqrt(eps) of one unit), a channel that takes two neighbouring values
# has std >= a quarter unit when they are equally common.
_DEAD_ULP_FRACTION = 0.125


def dead_rtol(dtype: torch.dtype) -> float:
    """The relative std (std / |mean|) at or below which a channel of `dtype` is dead."""
    return float(torch.finfo(dtype).eps) * _DEAD_ULP_FRACTION


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


@dataclass(frozen=True)
class ChannelStatistics:
    """Per-channel statistics of one stream; arrays of shape [C], float64.

    std is the population standard deviation (divides by the sample count);
    positive_fraction the fraction of samples > 0; dead a bool mask [C] of
    zero-variance channels; non_finite the NaN/Inf values seen (left out);
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


@dataclass
class _Moments:
    """Moments of one stream about its mean (float64), as `compute` reads them."""

    mean: torch.Tensor  # [C]
    comoment: torch.Tensor  # [C, C]  Σ (x - mean)(x - mean)ᵀ
    positives: torch.Tensor  # [C]  count of x > 0
    non_finite: torch.Tensor  # []  int64, NaN/Inf values seen


@dataclass
class _Sums:
    """Sufficient statistics of one stream about a per-channel shift s (device tensors).

    The accumulator holds them in float64; a batch's may be in its work dtype.
    """

    shift: torch.Tensor  # [C] float64 s, exactly representable in the dtype that set it
    offset: torch.Tensor  # [C]  Σ (x - s)
    raw: torch.Tensor  # [C, C]  Σ (x - s)(x - s)ᵀ
    positives: torch.Tensor  # [C]  count of x > 0
    non_finite: torch.Tensor | None  # []  int64, NaN/Inf values seen (None: none)
    # [C+2, C]: raw, offset and positives as rows of one tensor (they are its views),
    # added in one operation; None when they are separate.
    stacked: torch.Tensor | None = None


class CorrelationAccumulator:
    """Streaming channel correlations of activations, optionally against a second stream.

    Usage::

        acc = CorrelationAccumulator()                  # channels by default_channel_dim
        for x in batches:
            acc.update(layer_a(x), other=layer_b(x))   # `other` only for cross matrices
        result = acc.compute()                          # ChannelCorrelation, on the host

    Args:
      channel_dim: the channel dimension of `activations`; every other
        dimension indexes samples (inputs × positions). None (default): by
        `default_channel_dim` of the first batch (dim 1 of (N, C, H, W), the
        last of (N, C) and (N, L, C)).
      other_channel_dim: the channel dimension of `other`; `channel_dim` when
        that is given, else `default_channel_dim` of `other`.

    The first `update` fixes the channel counts, whether `other` is given, and
    the device; later batches must agree. `merge` adds another accumulator's
    samples exactly. It keeps one batch-sized buffer per stream, reused while
    batches keep their shape (fresh memory costs page faults on the CPU).
    """

    def __init__(self, channel_dim: int | None = None, other_channel_dim: int | None = None):
        # None until the first batch resolves it by default_channel_dim
        self.channel_dim: int | None = (
            None if channel_dim is None else _check_dim_arg(channel_dim, "channel_dim")
        )
        self.other_channel_dim: int | None = (
            self.channel_dim
            if other_channel_dim is None
            else _check_dim_arg(other_channel_dim, "other_channel_dim")
        )
        # the shape of the first batch of `activations` (None before it)
        self.activation_shape: tuple[int, ...] | None = None
        self._count: torch.Tensor | None = None  # float64 [] sample count
        self._a: _Sums | None = None
        self._b: _Sums | None = None
        self._cross: torch.Tensor | None = None  # [Ca, Cb]  Σ (x - s_a)(y - s_b)ᵀ
        # Per stream, the dtype the shift was rounded to: a batch in a dtype that
        # holds it exactly adds its sums as they are.
        self._shift_dtypes: list = []
        self._channels: tuple[int, ...] = ()
        self._dead_rtol = dead_rtol(torch.float32)
        # Dimensions of the first batch of `activations` (None before it), to resolve
        # a negative channel_dim.
        self.ndim: int | None = None
        # Per stream, the kept buffers for batches of one shape (see _Plan).
        self._buffers: list[dict] = [{}, {}]

    # -- what it holds ------------------------------------------------------

    @property
    def cross(self) -> bool:
        """True when fed a second stream (the matrix is then Ca×Cb)."""
        return self._b is not None

    @property
    def channels(self) -> tuple[int, ...]:
        """(C,) or (Ca, Cb); () before the first update."""
        if self._a is None:
            return ()
        return self._channels

    @property
    def device(self) -> torch.device | None:
        return None if self._a is None else self._a.shift.device

    @property
    def samples(self) -> int:
        """Sample positions accumulated so far (synchronises with the device)."""
        return 0 if self._count is None else int(self._count.item())

    # -- feeding --------------------------------------------------------------

    def update(self, activations: torch.Tensor, other: torch.Tensor | None = None) -> None:
        """Add one batch: `activations` [..., C, ...] and, for a cross matrix, `other`.

        `other` holds another network's activations of the same inputs: its
        sample dimensions (all but its channel dimension) must match those of
        `activations` one for one. No host synchronisation on CUDA.

        Raises:
          TypeError: not a floating-point tensor.
          ValueError: empty tensor, channel_dim out of range, channel counts or
            sample dimensions that differ from the stream's so far, `other`
            given (or left out) unlike in the first update.
        """
        if self.channel_dim is None:
            self.channel_dim = default_channel_dim(_ndim(activations, "activations"))
        x = _as_activations(activations, self.channel_dim, "activations")
        y = None
        if other is not None:
            if self.other_channel_dim is None:
                self.other_channel_dim = default_channel_dim(_ndim(other, "other"))
            y = _as_activations(other, self.other_channel_dim, "other")
            sample_x = _sample_shape(x, self.channel_dim)
            sample_y = _sample_shape(y, self.other_channel_dim)
            if sample_x != sample_y:
                raise ValueError(
                    "activations and other must cover the same samples (inputs × positions): "
                    f"activations {list(x.shape)} with channel_dim={self.channel_dim} has "
                    f"sample dimensions {list(sample_x)}, other {list(y.shape)} with "
                    f"channel_dim={self.other_channel_dim} has {list(sample_y)}; run both "
                    "networks on the same batch and compare layers of the same spatial size"
                )
            if y.device != x.device:
                y = y.to(x.device, non_blocking=True)
        self._check_consistent(x, y)
        if self.ndim is None:
            self.ndim = x.ndim
            self.activation_shape = tuple(int(n) for n in x.shape)
        rtol = max(dead_rtol(t.dtype) for t in (x, y) if t is not None)
        self._dead_rtol = rtol if self._a is None else max(self._dead_rtol, rtol)
        shifts = None
        if self._a is not None:
            shifts = [self._a.shift, None if self._b is None else self._b.shift]
        with torch.no_grad():
            count, sums, cross, shift_dtypes = _batch_sums(
                x,
                self.channel_dim,
                y,
                self.other_channel_dim,
                sync_free=x.device.type != "cpu",
                buffers=self._buffers,
                shifts=shifts,
                shift_dtypes=self._shift_dtypes,
            )
            if self._a is not None and x.device != self.device:  # a batch on another device
                count = torch.as_tensor(count, dtype=torch.float64).to(self.device)
                cross = None if cross is None else cross.to(self.device)
                sums = [_moved(s, self.device) for s in sums]
            self._add(count, sums[0], sums[1] if y is not None else None, cross, shift_dtypes)

    def merge(self, other: CorrelationAccumulator) -> CorrelationAccumulator:
        """Add every sample of `other` (exact); returns self.

        Both must have the same channel counts and both be cross or not; an
        empty accumulator on either side is fine.
        """
        if not isinstance(other, CorrelationAccumulator):
            raise TypeError(f"can only merge a CorrelationAccumulator, got {type(other).__name__}")
        if other._a is None:
            return self
        if self.ndim is None:
            self.ndim = other.ndim
            self.activation_shape = other.activation_shape
            if self.channel_dim is None:
                self.channel_dim, self.other_channel_dim = (
                    other.channel_dim,
                    other.other_channel_dim,
                )
        if self._a is not None and (self.cross != other.cross or self.channels != other.channels):
            raise ValueError(
                f"cannot merge accumulators of different shapes: channels {self.channels} "
                f"(cross={self.cross}) and {other.channels} (cross={other.cross})"
            )
        device = self.device if self._a is not None else other.device
        rtol = other._dead_rtol
        self._dead_rtol = rtol if self._a is None else max(self._dead_rtol, rtol)
        with torch.no_grad():
            self._add(  # copies: self updates its tensors in place, other stays as it is
                other._count.to(device, copy=True),
                _moved(other._a, device),
                None if other._b is None else _moved(other._b, device),
                None if other._cross is None else other._cross.to(device, copy=True),
                other._shift_dtypes,
            )
        return self

    # -- reading --------------------------------------------------------------

    def compute(self) -> ChannelCorrelation:
        """The statistics and correlation matrices, as numpy on the host.

        Raises:
          ValueError: nothing accumulated yet.
        """
        if self._a is None:
            raise ValueError("no activations accumulated yet: call update() first")
        count = float(self._count.item())
        moments, cross = _moments(self._count, [self._a, self._b], self._cross)
        rows, scale_a = _statistics(moments[0], count, self._dead_rtol)
        within_rows = _pearson(moments[0].comoment, scale_a, scale_a, diagonal=True)
        within_cols = cols = None
        matrix = within_rows
        if self._b is not None:
            cols, scale_b = _statistics(moments[1], count, self._dead_rtol)
            within_cols = _pearson(moments[1].comoment, scale_b, scale_b, diagonal=True)
            matrix = _pearson(cross, scale_a, scale_b, diagonal=False)
        return ChannelCorrelation(
            matrix=matrix,
            within_rows=within_rows,
            within_cols=within_cols,
            rows=rows,
            cols=cols,
            samples=int(count),
            cross=self._b is not None,
            channel_dim=None if self.channel_dim is None else self.channel_dim % self.ndim,
            activation_shape=self.activation_shape,
        )

    # -- internals ------------------------------------------------------------

    def _check_consistent(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        if self._a is None:
            return
        if (y is not None) != self.cross:
            raise ValueError(
                "this accumulator was first fed "
                + ("two streams (activations and other)" if self.cross else "one stream")
                + "; feed every batch the same way (use another accumulator otherwise)"
            )
        got = (x.shape[self.channel_dim],) + (
            () if y is None else (y.shape[self.other_channel_dim],)
        )
        if got != self.channels:
            raise ValueError(
                f"this accumulator holds {self.channels} channels, the batch has {got}: "
                "wrong channel_dim, or another layer's activations?"
            )

    def _add(
        self,
        count: torch.Tensor | float,
        a: _Sums,
        b: _Sums | None,
        cross: torch.Tensor | None,
        shift_dtypes: list,
    ) -> None:
        """Add a batch's (or another accumulator's) sums, about its shifts if they differ."""
        if self._a is None:  # the first batch: float64 copies of its sums
            self._count = torch.as_tensor(count, dtype=torch.float64, device=a.shift.device)
            self._count = self._count.clone()
            self._a = _float64_sums(a)
            self._b = None if b is None else _float64_sums(b)
            self._cross = None if cross is None else cross.to(torch.float64, copy=True)
            self._shift_dtypes = list(shift_dtypes)
            self._channels = tuple(int(m.shift.shape[0]) for m in (a, b) if m is not None)
            return
        if a.shift is not self._a.shift or (b is not None and b.shift is not self._b.shift):
            self._shift_to(a.shift, None if b is None else b.shift)
            self._shift_dtypes = list(shift_dtypes)
        self._count.add_(count)
        for into, new in ((self._a, a), (self._b, b)):
            if new is not None and new.stacked is not None:
                into.stacked.add_(new.stacked)
            elif new is not None:
                into.offset.add_(new.offset)
                into.raw.add_(new.raw)
                into.positives.add_(new.positives)
                if new.non_finite is not None:
                    into.non_finite.add_(new.non_finite)
        if cross is not None:
            self._cross.add_(cross)

    def _shift_to(self, shift_a: torch.Tensor, shift_b: torch.Tensor | None) -> None:
        """Re-express the held sums about new shifts (exact algebra, float64)."""
        e_a = _shift_sums(self._a, shift_a, self._count)
        e_b = None if self._b is None else _shift_sums(self._b, shift_b, self._count)
        if self._cross is None:
            return
        # Σ(x-s')(y-t')ᵀ = Σ(x-s)(y-t)ᵀ - e·Σ(y-t')ᵀ - Σ(x-s')·fᵀ - n·e·fᵀ  (e = s'-s, f = t'-t)
        if e_a is not None:
            self._cross.addr_(e_a, self._b.offset, alpha=-1)
        if e_b is not None:
            self._cross.addr_(self._a.offset, e_b, alpha=-1)
        if e_a is not None and e_b is not None:
            self._cross.addr_(e_a * self._count, e_b, alpha=-1)


def _shift_sums(sums: _Sums, shift: torch.Tensor, count: torch.Tensor) -> torch.Tensor | None:
    """Move float64 `sums` to a new shift in place; returns e = new − old (None: the same).

    With d' = d − e: Σd' = Σd − n·e and Σd'd'ᵀ = Σddᵀ − e·Σd'ᵀ − Σd'·eᵀ − n·e·eᵀ.
    """
    if shift is sums.shift:
        return None
    e = shift - sums.shift
    sums.offset.sub_(e * count)
    sums.raw.addr_(e, sums.offset, alpha=-1).addr_(sums.offset, e, alpha=-1)
    sums.raw.addr_(e * count, e, alpha=-1)
    sums.shift = shift
    return e


def _float64_sums(sums: _Sums) -> _Sums:
    """Float64 copies of a batch's sums, to hold and update in place."""
    non_finite = sums.non_finite
    if non_finite is None:
        non_finite = torch.zeros((), dtype=torch.int64, device=sums.shift.device)
    c = sums.shift.shape[0]
    stacked = torch.empty(c + 2, c, dtype=torch.float64, device=sums.shift.device)
    stacked[:c] = sums.raw
    stacked[c] = sums.offset
    stacked[c + 1] = sums.positives
    return _Sums(
        shift=sums.shift,
        offset=stacked[c],
        raw=stacked[:c],
        positives=stacked[c + 1],
        non_finite=non_finite.to(torch.int64, copy=True),
        stacked=stacked,
    )


def _moved(sums: _Sums, device: torch.device) -> _Sums:
    """A float64 copy of `sums` on `device`."""
    copy = _float64_sums(sums)
    c = copy.shift.shape[0]
    stacked = copy.stacked.to(device, copy=True)
    return _Sums(
        shift=copy.shift.to(device, copy=True),
        offset=stacked[c],
        raw=stacked[:c],
        positives=stacked[c + 1],
        non_finite=copy.non_finite.to(device, copy=True),
        stacked=stacked,
    )


def _moments(
    count: torch.Tensor, streams: list[_Sums | None], cross: torch.Tensor | None
) -> tuple[list[_Moments], torch.Tensor | None]:
    """Means and co-moments about the means from sums about shifts (float64).

    Σ(x−x̄)(x−x̄)ᵀ = Σ(x−s)(x−s)ᵀ − Σ(x−s)·Σ(x−s)ᵀ/n; likewise across two streams.
    """
    divisor = count.to(torch.float64).clamp(min=1.0)
    moments, offsets = [], []
    for sums in streams:
        if sums is None:
            continue
        offset = sums.offset.to(torch.float64)
        scaled = offset / divisor
        comoment = sums.raw.to(torch.float64, copy=True).sub_(torch.outer(offset, scaled))
        non_finite = sums.non_finite
        if non_finite is None:
            non_finite = torch.zeros((), dtype=torch.int64, device=offset.device)
        moments.append(
            _Moments(
                mean=scaled + sums.shift,
                comoment=comoment,
                positives=sums.positives.to(torch.float64),
                non_finite=non_finite,
            )
        )
        offsets.append(offset)
    if cross is not None:
        cross = cross.to(torch.float64, copy=True)
        cross.sub_(torch.outer(offsets[0], offsets[1] / divisor))
    return moments, cross


def _check_dim_arg(dim, name: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int (the channel dimension), got {dim!r}")
    return dim


def _ndim(values, name: str) -> int:
    """Dimensions of an activation batch (numpy or torch), checked to be at least 2."""
    ndim = getattr(values, "ndim", None)
    if not isinstance(ndim, int):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if ndim < 2:
        raise ValueError(
            f"{name} of shape {list(values.shape)} has no sample dimension: pass at least "
            "(samples, channels), e.g. (N, C), (N, L, C) or (N, C, H, W)"
        )
    return ndim


def _as_activations(values, channel_dim: int, name: str) -> torch.Tensor:
    """Check a batch of activations; returns it as a detached tensor."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if not values.is_floating_point():
        raise TypeError(
            f"{name} must be floating point, got dtype {values.dtype}: correlations of "
            "activations need real values (convert with .float() if the integers are data)"
        )
    if values.ndim < 2:
        raise ValueError(
            f"{name} of shape {list(values.shape)} has no sample dimension: pass at least "
            "(samples, channels), e.g. (N, C) or (N, C, H, W)"
        )
    if not -values.ndim <= channel_dim < values.ndim:
        raise ValueError(
            f"channel_dim={channel_dim} is out of range for {name} of shape "
            f"{list(values.shape)} ({values.ndim} dimensions)"
        )
    if values.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(values.shape)}): nothing to correlate")
    return values.detach()


def _sample_shape(values: torch.Tensor, channel_dim: int) -> tuple[int, ...]:
    shape = list(values.shape)
    del shape[channel_dim]
    return tuple(shape)


# Elements of x per chunk of the CPU pass (1 MiB of float32): each chunk is
# read from memory once, shifted into the buffer and compared with 0 from cache.
_CHUNK_ELEMENTS = 1 << 18
# Drift check: a batch passes when its mean offset δ from the shift is within
# its spread (2δ² ≤ E[(x−s)²], so the float32 product loses at most a factor 2
# of precision against a perfectly centred one), up to this fraction of |s|
# (offsets below it are rounding, as in a constant channel).
_SHIFT_RTOL = 1e-6


def _matmul(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left·right in their dtype; half precision into float32 (no overflow past 65504)."""
    if left.dtype != right.dtype:  # e.g. float16 against float32 activations
        common = torch.promote_types(left.dtype, right.dtype)
        left, right = left.to(common), right.to(common)
    if left.dtype in _HALF:
        try:  # CUDA: a half-precision product with float32 output
            return torch.mm(left, right, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):
            return left.float() @ right.float()
    return left @ right


class _Plan:
    """How batches of one shape are read for one stream, and the buffers they go to (kept).

    x − s goes in a buffer laid out the way x is read without a permuted copy:
    (S, C) rows when channels are innermost in memory (a Linear layer's
    output, channels_last), else (C, S), written by the same pass that
    subtracts the shift (N, C, H, W). The pass goes chunk by chunk (on the
    CPU): while a chunk is in cache it is summed (Σ(x−s), pairwise, in the
    work dtype) and compared with 0 (positives). `work` is the dtype of the
    buffer and the Gram product: the activations' dtype, float32 for half
    precision on the CPU (where half products are slow). Views of the buffers
    are made once, here: per-operation overhead dominates small batches.
    """

    def __init__(self, values: torch.Tensor, dim: int, sync_free: bool):
        self.dim = dim % values.ndim
        c = self.channels = values.shape[self.dim]
        s = self.samples = values.numel() // c
        self.work = torch.float32 if not sync_free and values.dtype in _HALF else values.dtype
        device = values.device
        self.rows = values.movedim(self.dim, -1).is_contiguous()
        self.split = None
        if not self.rows and values.is_contiguous():
            after = values.stride(self.dim)
            self.split = (s // after, c, after)
        if self.rows:
            buffer = torch.empty(s, c, dtype=self.work, device=device)
            self.left, self.right = buffer.t(), buffer
            target, length, per = buffer, s, c
        else:
            buffer = torch.empty(c, s, dtype=self.work, device=device)
            self.left, self.right = buffer, buffer.t()
            if self.split is not None:
                target = buffer.view(c, self.split[0], -1)
                length, per = self.split[0], c * self.split[2]
            else:  # any other memory layout: one strided pass
                sample_shape = [n for d, n in enumerate(values.shape) if d != self.dim]
                target, length, per = buffer.view(c, *sample_shape), 1, s * c
        step = length if sync_free else max(1, _CHUNK_ELEMENTS // per)
        self.spans = [(a, min(a + step, length)) for a in range(0, length, step)]
        # the positive test's chunk buffer (the masked path, all CUDA goes, has none)
        indicator = torch.empty(
            0 if sync_free else min(step, length) * per, dtype=self.work, device=device
        )
        self.targets, self.indicators = [], []
        for a, b in self.spans:
            if self.rows:
                self.targets.append(target[a:b])
                shape = (b - a, c)
            elif self.split is not None:
                self.targets.append(target[:, a:b])
                shape = (c, b - a, self.split[2])
            else:
                self.targets.append(target)
                shape = target.shape
            flags = None if sync_free else indicator[: (b - a) * per].view(shape)
            self.indicators.append(flags)
        # [Σ(x-s)(x-s)ᵀ; Σ(x-s)ᵀ; positives] as rows of one tensor, added to the held
        # sums in one operation; per-chunk sums and counts; the check
        self.stacked = torch.empty(c + 2, c, dtype=self.work, device=device)
        self.raw, self.offset, self.positives = (
            self.stacked[:c],
            self.stacked[c],
            self.stacked[c + 1],
        )
        self.diagonal = self.raw.diagonal()
        single = len(self.spans) == 1
        self.parts = torch.empty(2, len(self.spans), c, dtype=self.work, device=device)
        # per chunk: (target, indicator) as 2-D, the dim to sum, where the sums go
        self.reductions = [
            (t, i, 0) if self.rows else (t.reshape(c, -1), i if i is None else i.view(c, -1), 1)
            for t, i in zip(self.targets, self.indicators)
        ]
        self.outs = [
            (self.offset, self.positives) if single else (self.parts[0, j], self.parts[1, j])
            for j in range(len(self.spans))
        ]
        self.margin = torch.empty(c, dtype=self.work, device=device)
        self.passed = torch.empty(c, dtype=torch.bool, device=device)
        self._shift = (None, None, None)

    def chunks(self, values: torch.Tensor) -> list[torch.Tensor]:
        """The chunks of x matching `targets`: (rows, C) or (C, before, after) views."""
        single = len(self.spans) == 1
        if self.rows:
            if values.ndim == 2 and self.dim == 1:
                source = values
            else:
                source = values.movedim(self.dim, -1).reshape(-1, self.channels)
            return [source] if single else [source[a:b] for a, b in self.spans]
        if self.split is not None:
            source = values.view(self.split)
            if single:
                return [source.transpose(0, 1)]
            return [source[a:b].transpose(0, 1) for a, b in self.spans]
        return [values.movedim(self.dim, 0)]

    def shift(self, shift: torch.Tensor, count: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The shift in the work dtype, shaped for `targets`, and −n·rtol²·s² for the check."""
        if self._shift[0] is not shift:
            work = shift.to(self.work)
            shaped = work if self.rows else work.view(-1, *([1] * (self.targets[0].ndim - 1)))
            floor = work.square().mul_(-count * _SHIFT_RTOL**2)
            self._shift = (shift, shaped, floor)
        return self._shift[1], self._shift[2]

    def clean(self, values: torch.Tensor, shift: torch.Tensor) -> _Sums | None:
        """The CPU's pass over a batch of finite values: its sums about `shift`, or None.

        None (one host check) when a shifted sum is not finite (NaN/Inf
        somewhere) or the batch's mean has drifted from the shift by more than
        its spread: 2δ² > E[(x−s)²] beyond rounding (δ: mean − s).
        """
        count = float(self.samples)
        shaped, floor = self.shift(shift, count)
        chunks = self.chunks(values)
        for part, target, indicator, (shifted, flags, dim), (offset, positives) in zip(
            chunks, self.targets, self.indicators, self.reductions, self.outs
        ):
            torch.sub(part, shaped, out=target)
            torch.sum(shifted, dim, out=offset)
            torch.gt(part, 0, out=indicator)
            torch.sum(flags, dim, out=positives)
        stacked, positives = self.stacked, self.positives
        if len(chunks) > 1:
            torch.sum(self.parts[0], 0, out=self.offset)
            if count < 2**24:  # float32 sums of counts are exact
                torch.sum(self.parts[1], 0, out=self.positives)
            else:
                positives, stacked = self.parts[1].sum(0, dtype=torch.float64), None
        torch.mm(self.left, self.right, out=self.raw)
        torch.addcmul(self.diagonal, self.offset, self.offset, value=-2.0 / count, out=self.margin)
        if not bool(torch.ge(self.margin, floor, out=self.passed).all()):
            return None
        return _Sums(shift, self.offset, self.raw, positives, None, stacked)

    def shifted(self, values: torch.Tensor, shift: torch.Tensor) -> None:
        """Write x − shift into the buffer (no counting)."""
        shaped, _ = self.shift(shift, float(self.samples))
        for part, target in zip(self.chunks(values), self.targets):
            torch.sub(part, shaped, out=target)

    def sums(self, values: torch.Tensor) -> torch.Tensor:
        """Σ x per channel of `values` (this plan's layout), in float32 or wider."""
        wide = torch.float32 if values.dtype in _HALF else None
        if self.split is not None and values.is_contiguous():
            return values.view(self.split).sum(2, dtype=wide).sum(0)
        dims = [d for d in range(values.ndim) if d != self.dim]
        return values.sum(dim=dims, dtype=wide)


def _plan(values: torch.Tensor, dim: int, sync_free: bool, holder: dict) -> _Plan:
    """The kept plan for batches of this shape and layout, made anew when they change."""
    key = (values.shape, values.stride(), values.dtype, values.device, dim, sync_free)
    plan = holder.get(key)
    if plan is None:
        holder.clear()  # one plan a stream: a new batch shape replaces the buffers
        plan = holder[key] = _Plan(values, dim, sync_free)
    return plan


def _batch_sums(
    x: torch.Tensor,
    dim_x: int,
    y: torch.Tensor | None,
    dim_y: int,
    sync_free: bool,
    buffers: list[dict] | None = None,
    shifts: list | None = None,
    shift_dtypes: list | None = None,
) -> tuple[torch.Tensor | float, list[_Sums], torch.Tensor | None, list]:
    """Sample count, sums of each stream about a shift, cross sums [Ca, Cb] of one batch.

    shifts: the accumulator's shifts (float64 [C] per stream), exactly
      representable in `shift_dtypes`; None for the first batch (its own mean).
    sync_free: never look at values on the host (CUDA): every batch takes the
      masked path, shifted by the mean of its finite sample positions. On the
      CPU the masked path runs only when the clean pass's check fails.
    buffers: per-stream dicts that keep the buffers between batches.
    Returns the count, the sums (whose `shift` is the one in `shifts` when the
    batch was taken about it; they may be views of kept buffers: add them
    before the next batch), the cross sums and the dtypes the shifts are exact in.
    """
    if buffers is None:
        buffers = [{}, {}]
    pairs = [(x, dim_x)] + ([] if y is None else [(y, dim_y)])
    plans = [_plan(t, d, sync_free, h) for (t, d), h in zip(pairs, buffers)]
    values = [t for t, _ in pairs]
    if not sync_free:
        clean = _clean_batch_sums(plans, values, shifts, shift_dtypes)
        if clean is not None:
            return clean
    return _masked_batch_sums(plans, values)


def _clean_batch_sums(plans: list[_Plan], values: list, shifts: list | None, shift_dtypes):
    """The CPU's path for a batch of finite values, about the held shifts; None if it fails."""
    count = float(plans[0].samples)
    works = [p.work for p in plans]
    if shifts is None:  # the first batch: about its own mean
        means = [p.sums(v) / count for p, v in zip(plans, values)]
        if not all(bool(torch.isfinite(m).all()) for m in means):
            return None
        shifts = [m.to(w).to(torch.float64) for m, w in zip(means, works)]
        shift_dtypes = works
    elif any(torch.promote_types(d, w) != w for d, w in zip(shift_dtypes, works)):
        # the shifts are not exact in this batch's dtype: take the batch about their rounding
        shifts = [s.to(w).to(torch.float64) for s, w in zip(shifts, works)]
        shift_dtypes = works
    sums = []
    for plan, v, shift in zip(plans, values, shifts):
        result = plan.clean(v, shift)
        if result is None:  # NaN/Inf, or drifted: start again
            return None
        sums.append(result)
    cross = _matmul(plans[0].right.t(), plans[1].right) if len(plans) > 1 else None
    return count, sums, cross, shift_dtypes


def _masked_batch_sums(plans: list[_Plan], values: list):
    """Every batch on CUDA, and a batch with NaN/Inf (or drift) on the CPU.

    Sample positions with a NaN/Inf in any channel of either stream are left
    out; each stream is shifted by the mean of the kept positions.
    """
    finite = [torch.isfinite(v) for v in values]
    non_finite = [(f.numel() - f.sum()).to(torch.int64) for f in finite]
    ok = None
    for f, p in zip(finite, plans):
        row_ok = f.all(dim=p.dim)
        ok = row_ok if ok is None else ok & row_ok
    ok_rows = ok.reshape(-1)
    count = ok_rows.sum(dtype=torch.float64)
    divisor = count.clamp(min=1.0)
    sums = []
    for plan, v, bad in zip(plans, values, non_finite):
        kept = v.masked_fill(~ok.unsqueeze(plan.dim), 0)
        shift = (plan.sums(kept).to(torch.float64) / divisor).to(plan.work)
        shift = shift.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).to(torch.float64)
        plan.shifted(v, shift)
        plan.right.masked_fill_(~ok_rows.unsqueeze(1), 0)
        dims = [d for d in range(kept.ndim) if d != plan.dim]
        positives = kept.gt(0).sum(dim=dims, dtype=torch.float64)  # dropped positions hold 0
        raw = _matmul(plan.left, plan.right)
        offset = plan.right.sum(0, dtype=torch.float32 if plan.work in _HALF else None)
        sums.append(_Sums(shift, offset, raw, positives, bad))
    cross = _matmul(plans[0].right.t(), plans[1].right) if len(plans) > 1 else None
    return count, sums, cross, [p.work for p in plans]


def _batch_moments(
    x: torch.Tensor,
    dim_x: int,
    y: torch.Tensor | None,
    dim_y: int,
    sync_free: bool,
) -> tuple[torch.Tensor, list[_Moments], torch.Tensor | None]:
    """Sample count, moments of each stream about its mean, cross co-moment of one batch."""
    count, sums, cross, _ = _batch_sums(x, dim_x, y, dim_y, sync_free)
    count = torch.as_tensor(count, dtype=torch.float64, device=x.device)
    moments, cross = _moments(count, sums + [None], cross)
    return count, moments, cross


def _statistics(
    moments: _Moments, count: float, dead_rtol: float
) -> tuple[ChannelStatistics, torch.Tensor]:
    """Host statistics, and 1/√(Σ(x−x̄)²) per channel for the Pearson scale.

    The scale is 0 for dead channels and for channels whose sums overflowed
    (so their correlations come out 0, never NaN).
    """
    squares = torch.diagonal(moments.comoment).clamp(min=0.0)
    divisor = max(count, 1.0)
    std = torch.sqrt(squares / divisor)
    overflow = ~torch.isfinite(moments.mean) | ~torch.isfinite(squares)
    dead = ((std <= dead_rtol * moments.mean.abs()) | (count == 0)) & ~overflow
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


def _pearson(
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
