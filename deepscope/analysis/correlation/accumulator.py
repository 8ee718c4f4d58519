"""`CorrelationAccumulator`: streaming channel correlations of activations, exactly merged.

It keeps, per channel, the sample count, the sums Σ(x−s) and Σ(x−s)(x−s)ᵀ
about a per-channel shift s close to the mean, and the count of positive
values, all in float64 (`sums`): the means and co-moments follow exactly, and
accumulators merge exactly. Fed a second stream (another network's
activations on the same inputs) it also keeps the cross sums, for the Ca×Cb
matrix. On the CPU a batch takes the clean path (`clean_path`), or the masked
path when it holds NaN/Inf or has drifted; on CUDA every batch takes the
masked path, shifted by its own mean, with no host synchronisation in `update`.
"""

from __future__ import annotations

import numpy as np
import torch

from deepscope.analysis.correlation.batch_sums import batch_sums
from deepscope.analysis.correlation.channel_dim import default_channel_dim
from deepscope.analysis.correlation.pearson import channel_statistics, dead_rtol, pearson
from deepscope.analysis.correlation.results import ChannelCorrelation
from deepscope.analysis.correlation.sums import (
    Sums,
    float64_sums,
    moments_about_means,
    moved,
    shift_sums,
)


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
        self._a: Sums | None = None
        self._b: Sums | None = None
        self._cross: torch.Tensor | None = None  # [Ca, Cb]  Σ (x - s_a)(y - s_b)ᵀ
        # Per stream, the dtype the shift was rounded to: a batch in a dtype that
        # holds it exactly adds its sums as they are.
        self._shift_dtypes: list = []
        self._channels: tuple[int, ...] = ()
        self._dead_rtol = dead_rtol(torch.float32)
        # Dimensions of the first batch of `activations` (None before it), to resolve
        # a negative channel_dim.
        self.ndim: int | None = None
        # Per stream, the kept buffers for batches of one shape (see Plan).
        self._buffers: list[dict] = [{}, {}]
        # Whether batches take the masked path without host checks: None by the device
        # (CUDA yes, CPU no); tests set True to run the CUDA path on the CPU.
        self._masked_only: bool | None = None

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
            count, sums, cross, shift_dtypes = batch_sums(
                x,
                self.channel_dim,
                y,
                self.other_channel_dim,
                sync_free=self._sync_free(x.device),
                buffers=self._buffers,
                shifts=shifts,
                shift_dtypes=self._shift_dtypes,
            )
            if self._a is not None and x.device != self.device:  # a batch on another device
                count = torch.as_tensor(count, dtype=torch.float64).to(self.device)
                cross = None if cross is None else cross.to(self.device)
                sums = [moved(s, self.device) for s in sums]
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
                moved(other._a, device),
                None if other._b is None else moved(other._b, device),
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
        moments, cross = moments_about_means(self._count, [self._a, self._b], self._cross)
        rows, scale_a = channel_statistics(moments[0], count, self._dead_rtol)
        within_rows = pearson(moments[0].comoment, scale_a, scale_a, diagonal=True)
        within_cols = cols = None
        matrix = within_rows
        if self._b is not None:
            cols, scale_b = channel_statistics(moments[1], count, self._dead_rtol)
            within_cols = pearson(moments[1].comoment, scale_b, scale_b, diagonal=True)
            matrix = pearson(cross, scale_a, scale_b, diagonal=False)
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

    def comoments(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Co-moments about the means, float64 numpy: Σ(x − x̄)(x − x̄)ᵀ of the rows'
        stream [C_a, C_a], of the columns' stream [C_b, C_b] and across them
        [C_a, C_b] (the last two None unless cross), over the sample positions
        kept. What linear CKA (`analysis.cka.cka_from_comoments`) reads.

        Raises:
          ValueError: nothing accumulated yet.
        """
        if self._a is None:
            raise ValueError("no activations accumulated yet: call update() first")
        moments, cross = moments_about_means(self._count, [self._a, self._b], self._cross)
        within_a = moments[0].comoment.cpu().numpy()
        if self._b is None:
            return within_a, None, None
        return within_a, moments[1].comoment.cpu().numpy(), cross.cpu().numpy()

    # -- internals ------------------------------------------------------------

    def _sync_free(self, device: torch.device) -> bool:
        """Whether a batch on `device` takes the masked path with no host synchronisation."""
        return device.type != "cpu" if self._masked_only is None else self._masked_only

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
        a: Sums,
        b: Sums | None,
        cross: torch.Tensor | None,
        shift_dtypes: list,
    ) -> None:
        """Add a batch's (or another accumulator's) sums, about its shifts if they differ."""
        if self._a is None:  # the first batch: float64 copies of its sums
            self._count = torch.as_tensor(count, dtype=torch.float64, device=a.shift.device)
            self._count = self._count.clone()
            self._a = float64_sums(a)
            self._b = None if b is None else float64_sums(b)
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
        e_a = shift_sums(self._a, shift_a, self._count)
        e_b = None if self._b is None else shift_sums(self._b, shift_b, self._count)
        if self._cross is None:
            return
        # Σ(x-s')(y-t')ᵀ = Σ(x-s)(y-t)ᵀ - e·Σ(y-t')ᵀ - Σ(x-s')·fᵀ - n·e·fᵀ  (e = s'-s, f = t'-t)
        if e_a is not None:
            self._cross.addr_(e_a, self._b.offset, alpha=-1)
        if e_b is not None:
            self._cross.addr_(self._a.offset, e_b, alpha=-1)
        if e_a is not None and e_b is not None:
            self._cross.addr_(e_a * self._count, e_b, alpha=-1)


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
