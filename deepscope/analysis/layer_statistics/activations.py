"""Sums of one module output's activations: mergeable, on the device, no host sync.

What is summed, per output tensor x (E elements, C channels):

- elements E, non-finite elements F (NaN, ±inf), exact zeros among the
  finite ones, saturated values (bounded activations only, by the rule of
  `bounds`), all int64;
- n = E − F finite values: their sum and their co-moment about their mean,
  m2 = Σ(x − mean)², float64; the largest |x|, float64;
- per channel, whether it had a finite non-zero value, int64 [C] (summed
  over merged batches): a channel with none is dead (zero on every sample
  seen).

Statistics are of the finite values only. A batch takes a few branch-free
passes (no data-dependent kernels; count_nonzero is up to 10× slower on
ReLU outputs): the min and max; the finite non-zeros per channel, as sums of
a 0/1 indicator x ≠ 0; the sum Σ; then Σ(x − s)² about the shift s = Σ/E, so
the variance does not cancel even far from zero and squares do not overflow.
Where values may be non-finite, they are first replaced by 0 in a private
copy, and F is the sum of the indicator "x·0 is NaN"; the sums are then
corrected exactly for the stand-in zeros. On the CPU, where reading a result
waits for nothing, a tensor whose min and max are finite skips that masking;
on accelerators the masked passes always run, so nothing synchronises.
On the CPU, Σx² is also used directly when it is at most 4× the co-moment
(mean² ≤ 3·variance: cancellation costs at most 2 bits), skipping the
shifted pass; accelerators always take the shifted pass.

Precision: float16 and bfloat16 are widened to float32 (exactly); float32
and float64 are summed in their own precision by torch's reductions
(pairwise on the CPU), then held and merged in float64. Count sums are
exact: float32 below 2²⁴ values, float64 above.

Merging two sums (`ActivationSums.merge`) is exact algebra: counts add, m2 by
the parallel formula of Chan, Golub & LeVeque (1979),
m2 = m2ₐ + m2_b + δ²·nₐ·n_b/n with δ = mean_b − meanₐ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deepscope.analysis.layer_statistics.bounds import DEFAULT_TOLERANCE, saturation_thresholds

ACTIVATION_STATISTICS = (
    "mean",
    "std",
    "rms",
    "max_abs",
    "zero_fraction",
    "saturated_fraction",
    "non_finite_fraction",
    "dead_fraction",
)
"""The columns `activation_table` computes from the sums, in this order."""

COVARIANCE_STATISTICS = ("effective_dimension", "saturation", "effective_rank")
"""The columns from a layer's channel covariance (`covariance`), in this order."""

STATISTICS = ACTIVATION_STATISTICS + COVARIANCE_STATISTICS
"""Every activation column of a layer-statistics step, in the order the schema lists them."""


@dataclass
class ActivationSums:
    """Sums of one module output over the batches seen (0-d device tensors unless noted).

    Build with `activation_sums`, combine with `merge`; nothing here reads a
    value on the host.
    """

    elements: torch.Tensor  # int64: every element seen, finite or not
    non_finite: torch.Tensor  # int64: NaN and ±inf elements
    zeros: torch.Tensor  # int64: finite elements exactly 0
    saturated: torch.Tensor  # int64: values within the tolerance of a bound (0 if not bounded)
    total: torch.Tensor  # float64: Σ of the finite values
    m2: torch.Tensor  # float64: Σ (x − mean)² over the finite values
    max_abs: torch.Tensor  # float64: max |x| over the finite values (0 if none)
    # int64 [C]: how many of the merged batches had a finite non-zero value in the
    # channel (0 or 1 for one batch); 0 is a dead channel.
    channel_active: torch.Tensor
    bounded: bool  # whether `saturated` was counted (a bounded activation)

    @property
    def channels(self) -> int:
        """C, the number of channels."""
        return int(self.channel_active.shape[0])

    @property
    def count(self) -> torch.Tensor:
        """n, the finite values (int64, device)."""
        return self.elements - self.non_finite

    def merge(self, other: ActivationSums) -> ActivationSums:
        """The sums of both streams together (a new object; neither is changed).

        Raises:
          ValueError: the two have different channel counts.
        """
        if other.channels != self.channels:
            raise ValueError(
                f"cannot merge activation sums of {self.channels} and {other.channels} channels"
            )
        na = self.count.to(torch.float64)
        nb = other.count.to(torch.float64)
        n = na + nb
        delta = other.total / nb.clamp(min=1) - self.total / na.clamp(min=1)
        m2 = self.m2 + other.m2 + delta * delta * (na * nb / n.clamp(min=1))
        return ActivationSums(
            elements=self.elements + other.elements,
            non_finite=self.non_finite + other.non_finite,
            zeros=self.zeros + other.zeros,
            saturated=self.saturated + other.saturated,
            total=self.total + other.total,
            m2=m2,
            max_abs=torch.maximum(self.max_abs, other.max_abs),
            channel_active=self.channel_active + other.channel_active,
            bounded=self.bounded or other.bounded,
        )


def activation_sums(
    x: torch.Tensor,
    channel_dim: int | None,
    bounds: tuple[float, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ActivationSums:
    """The sums of one floating-point activation tensor `x` (any shape), on its device.

    Args:
      x: a module's output (detached inside; gradients never flow from here).
      channel_dim: its channel dimension (negative counts from the end), or
        None for one channel (every element a sample). See `channel_dim_of`.
      bounds: the activation's output range (`saturation_bounds`), or None
        when it is not a bounded activation (saturation is not counted).
      tolerance: the saturation tolerance, a fraction of the range.

    Raises:
      ValueError: `x` is not floating point, or `channel_dim` is out of range.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(
            "activation sums need a floating-point tensor, got "
            f"{getattr(x, 'dtype', type(x).__name__)}; skip other outputs (output_tensors does)"
        )
    x = x.detach()
    if channel_dim is not None:
        if not -x.ndim <= channel_dim < x.ndim:
            raise ValueError(
                f"channel_dim {channel_dim} is out of range for an activation of shape "
                f"{tuple(x.shape)}"
            )
        channel_dim %= x.ndim
    channels = 1 if channel_dim is None else x.shape[channel_dim]
    device = x.device
    i64 = {"dtype": torch.int64, "device": device}
    f64 = {"dtype": torch.float64, "device": device}
    elements = x.numel()
    with torch.no_grad():
        thresholds = None if bounds is None else saturation_thresholds(bounds, tolerance)
        saturated = torch.zeros((), **i64)
        if elements == 0:
            zero = torch.zeros((), **f64)
            return ActivationSums(
                elements=torch.zeros((), **i64),
                non_finite=torch.zeros((), **i64),
                zeros=torch.zeros((), **i64),
                saturated=saturated,
                total=zero,
                m2=zero.clone(),
                max_abs=zero.clone(),
                channel_active=torch.zeros(channels, **i64),
                bounded=bounds is not None,
            )
        big = elements >= _EXACT
        count_dtype = torch.float64 if big else torch.float32
        # The work tensor: float32 at least (half widened, exactly), finite.
        work, private = x, False
        if x.dtype in (torch.float16, torch.bfloat16):
            work, private = x.to(torch.float32), True
        if thresholds is not None:
            # In float32 at least (the thresholds rounded to it); NaN compares false.
            low, high = thresholds
            saturated = torch.count_nonzero(torch.logical_or(work <= low, work >= high))
        all_finite = False
        if reads_results(work.device):
            # On the CPU a kernel has finished when it returns: reading its result
            # waits for nothing. An all-finite tensor skips the masking passes.
            lowest, highest = torch.aminmax(work)
            all_finite = bool(torch.isfinite(lowest) & torch.isfinite(highest))
        if all_finite:
            non_finite = torch.zeros((), **i64)
        else:
            if private:
                torch.nan_to_num_(work, nan=0.0, posinf=0.0, neginf=0.0)
            else:
                work, private = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), True
            indicator = x * 0  # 0 where finite, NaN where not
            torch.nan_to_num_(indicator, nan=1.0)
            non_finite = indicator.sum(dtype=count_dtype).to(torch.int64)
            del indicator
            lowest, highest = torch.aminmax(work)
        max_abs = torch.maximum(highest, -lowest).to(torch.float64)
        # Counts as float sums of a 0/1 indicator (branch-free, unlike count_nonzero),
        # exact below 2^24, else summed in float64.
        buffer = torch.empty_like(work)
        torch.ne(work, 0, out=buffer)
        per_channel = _channel_sums(buffer, channel_dim, elements // max(channels, 1))
        nonzero = per_channel.sum(dtype=torch.float64).to(torch.int64)
        channel_active = (per_channel > 0).to(torch.int64)
        # Sums about a shift s = Σ/E near the mean, so Σ(x − s)² keeps the variance
        # (no cancellation) and fits float32 (no overflow from large means).
        total = work.sum(dtype=torch.float64 if big else work.dtype).to(torch.float64)
        e = float(elements)
        if all_finite:
            zeros = elements - nonzero
            # Σx² itself, where it is at most 4× the co-moment (mean² ≤ 3·variance):
            # cancellation then costs at most 2 bits, and the shifted pass is skipped.
            squares = _sum_of_squares(work).to(torch.float64)
            m2 = squares - total * total / e
            if bool(squares <= 4.0 * m2):  # a CPU read (all_finite implies the CPU)
                return _sums(
                    elements,
                    non_finite,
                    zeros,
                    saturated,
                    total,
                    m2,
                    max_abs,
                    channel_active,
                    bounds,
                )
        shift = (total / e).to(work.dtype)
        if private:
            deviations = work.sub_(shift)
        else:
            deviations = torch.sub(work, shift, out=buffer)
        squares = _sum_of_squares(deviations).to(torch.float64)
        s64 = shift.to(torch.float64)
        if all_finite:
            offset = total - e * s64  # Σ(x − s)
            m2 = (squares - offset * offset / e).clamp(min=0)
        else:
            zeros = elements - non_finite - nonzero
            # The F stand-in zeros became −s: each added −s to Σ(x − s) and s² to Σ(x − s)².
            f = non_finite.to(torch.float64)
            n = (e - f).clamp(min=1)
            offset = total - (e - f) * s64  # Σ over the finite values of (x − s)
            m2 = (squares - f * s64 * s64 - offset * offset / n).clamp(min=0)
        return _sums(
            elements, non_finite, zeros, saturated, total, m2, max_abs, channel_active, bounds
        )


def _sums(elements, non_finite, zeros, saturated, total, m2, max_abs, channel_active, bounds):
    return ActivationSums(
        elements=torch.full((), elements, dtype=torch.int64, device=total.device),
        non_finite=non_finite,
        zeros=zeros,
        saturated=saturated,
        total=total,
        m2=m2,
        max_abs=max_abs,
        channel_active=channel_active,
        bounded=bounds is not None,
    )


def _sum_of_squares(t: torch.Tensor) -> torch.Tensor:
    """Σt² in t's dtype: a BLAS dot for a contiguous t, else the 2-norm squared."""
    if t.is_contiguous():
        flat = t.view(-1)
        return torch.dot(flat, flat)
    return torch.linalg.vector_norm(t).square()


def reads_results(device: torch.device) -> bool:
    """Whether reading a result on `device` waits for nothing (the CPU's kernels are synchronous).

    There, a sum may look at one flag to skip passes; elsewhere it never reads.
    """
    return device.type == "cpu"


_EXACT = 2**24
"""float32 sums of 0/1 values are exact below this."""


def _channel_sums(t: torch.Tensor, channel_dim: int | None, per_channel: int) -> torch.Tensor:
    """Σ of `t` per channel ([C]; [1] for channel_dim None), float64 where float32 could round.

    A contiguous `t` is viewed as (before, C, after) and summed over `after`
    then `before`: on the CPU several times faster than one reduction over
    both.
    """
    dtype = torch.float64 if per_channel >= _EXACT else t.dtype
    if channel_dim is None:
        return t.sum(dtype=dtype).reshape(1)
    if t.is_contiguous():
        shape = t.shape
        before = math.prod(shape[:channel_dim])
        after = math.prod(shape[channel_dim + 1 :])
        return t.view(before, shape[channel_dim], after).sum(dim=2, dtype=dtype).sum(dim=0)
    others = tuple(d for d in range(t.ndim) if d != channel_dim)
    return t.sum(dim=others, dtype=dtype)


@dataclass
class ActivationTable:
    """Rows of activation statistics, on the device: copy each to the host once."""

    values: torch.Tensor  # float64 [L, len(ACTIVATION_STATISTICS)]; NaN where undefined
    counts: torch.Tensor  # int64 [L]: elements seen (finite or not)
    channels: torch.Tensor  # int64 [L]
    dead_channels: torch.Tensor  # int64 [L]: channels with no finite non-zero value


def activation_table(sums: Sequence[ActivationSums]) -> ActivationTable:
    """The statistics of each row's sums, columns `ACTIVATION_STATISTICS`, in a few device ops.

    Per row, over its n finite values of E elements and C channels:
    mean = Σx/n; std = √(m2/n) (population: divided by n); rms = √(mean² + std²);
    max_abs; zero_fraction = zeros/n; saturated_fraction = saturated/n (NaN for a
    row that is not a bounded activation); non_finite_fraction = F/E;
    dead_fraction = dead channels/C. A row with n = 0 has NaN for all but
    non_finite_fraction and dead_fraction; E = 0 gives NaN there too.

    Raises:
      ValueError: no rows.
    """
    if not sums:
        raise ValueError("activation_table needs at least one row of sums")
    device = sums[0].total.device

    def stack(name: str) -> torch.Tensor:
        return torch.stack([getattr(s, name).to(device) for s in sums])

    elements = stack("elements")
    non_finite = stack("non_finite")
    f64 = torch.float64
    n = (elements - non_finite).to(f64)
    # Built on the device from its own tensors (no host-to-device copies: on CUDA
    # a blocking copy would wait for the stream).
    nan = torch.full((), math.nan, dtype=f64, device=device)
    safe_n = torch.where(n > 0, n, nan)
    mean = stack("total") / safe_n
    variance = stack("m2") / safe_n
    std = variance.sqrt()
    rms = (mean * mean + variance).sqrt()
    max_abs = torch.where(n > 0, stack("max_abs"), nan)
    zero_fraction = stack("zeros").to(f64) / safe_n
    saturated = torch.stack([s.saturated.to(device, f64) if s.bounded else nan for s in sums])
    saturated_fraction = saturated / safe_n
    e = elements.to(f64)
    non_finite_fraction = non_finite.to(f64) / torch.where(e > 0, e, nan)
    dead = torch.stack([(s.channel_active == 0).sum().to(device) for s in sums])
    channels = torch.stack(
        [torch.full((), s.channels, dtype=torch.int64, device=device) for s in sums]
    )
    dead_fraction = dead.to(f64) / torch.where(channels > 0, channels.to(f64), nan)
    values = torch.stack(
        [
            mean,
            std,
            rms,
            max_abs,
            zero_fraction,
            saturated_fraction,
            non_finite_fraction,
            dead_fraction,
        ],
        dim=1,
    )
    return ActivationTable(values=values, counts=elements, channels=channels, dead_channels=dead)


def activation_statistics(sums: ActivationSums) -> dict[str, float]:
    """One row's statistics as host floats, plus "count", "channels", "dead_channels".

    A convenience for tests and off the hot path: it copies to the host
    (synchronises). Measurers use `activation_table` and copy once.
    """
    table = activation_table([sums])
    values = table.values[0].cpu().tolist()
    out = dict(zip(ACTIVATION_STATISTICS, values))
    out["count"] = float(table.counts[0])
    out["channels"] = float(table.channels[0])
    out["dead_channels"] = float(table.dead_channels[0])
    return out
