"""Sums of one module output's activations: mergeable, on the device, no host sync.

What is summed, per output tensor x (E elements, C channels):

- elements E, non-finite elements F (NaN, ±inf), exact zeros among the
  finite ones, saturated values (bounded activations only, by the rule of
  `bounds`), all int64;
- n = E − F finite values: their sum and their co-moment about their mean,
  m2 = Σ(x − mean)², float64; the largest |x|, float64;
- per channel, the finite non-zero values, int64 [C]: a channel with none
  is dead (zero on every sample seen).

Statistics are of the finite values only. Half-precision inputs (float16,
bfloat16) are widened to float32 first (exact); the mean and m2 come from
`torch.var_mean` (Welford; its accumulator is float64 on the CPU for float32
input, float32 on CUDA) and are held and merged in float64, so sums of
squares never overflow and never lose the variance to cancellation.

Merging two sums (`ActivationSums.merge`) is exact algebra: counts add, m2 by
the parallel formula of Chan, Golub & LeVeque (1979),
m2 = m2ₐ + m2_b + δ²·nₐ·n_b/n with δ = mean_b − meanₐ.
"""

from __future__ import annotations

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
    channel_nonzero: torch.Tensor  # int64 [C]: finite non-zero values per channel
    bounded: bool  # whether `saturated` was counted (a bounded activation)

    @property
    def channels(self) -> int:
        """C, the number of channels."""
        return int(self.channel_nonzero.shape[0])

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
            channel_nonzero=self.channel_nonzero + other.channel_nonzero,
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
        if bounds is not None:
            low, high = saturation_thresholds(bounds, tolerance)
            # On x itself: NaN compares false, so it is never counted saturated.
            saturated = torch.count_nonzero(torch.logical_or(x <= low, x >= high))
        else:
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
                channel_nonzero=torch.zeros(channels, **i64),
                bounded=bounds is not None,
            )
        # The finite values, non-finite ones replaced by 0 (float32 at least).
        if x.dtype in (torch.float16, torch.bfloat16):
            clean = x.to(torch.float32)
            torch.nan_to_num_(clean, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            clean = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        nonzero_raw = torch.count_nonzero(x)  # counts NaN and ±inf as non-zero
        if channel_dim is None:
            channel_nonzero = torch.count_nonzero(clean).reshape(1)
        else:
            others = tuple(d for d in range(x.ndim) if d != channel_dim)
            channel_nonzero = (
                torch.count_nonzero(clean, dim=others) if others else (clean != 0).to(torch.int64)
            )
        nonzero_clean = channel_nonzero.sum()
        non_finite = nonzero_raw - nonzero_clean
        zeros = elements - nonzero_raw
        var_c, mean_c = torch.var_mean(clean, correction=0)
        lowest, highest = torch.aminmax(clean)
        e = float(elements)
        total = mean_c.to(torch.float64) * e
        m2_all = var_c.to(torch.float64) * e
        # Remove the F zeros that stood in for non-finite values (exact algebra):
        # m2 = m2_all − F·S²/(n·E), n = E − F.
        f = non_finite.to(torch.float64)
        n = e - f
        m2 = (m2_all - f * total * total / (n.clamp(min=1) * e)).clamp(min=0)
        max_abs = torch.maximum(highest, -lowest).to(torch.float64)
        return ActivationSums(
            elements=torch.full((), elements, **i64),
            non_finite=non_finite,
            zeros=zeros,
            saturated=saturated,
            total=total,
            m2=m2,
            max_abs=max_abs,
            channel_nonzero=channel_nonzero,
            bounded=bounds is not None,
        )


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
    nan = torch.tensor(float("nan"), dtype=f64, device=device)
    safe_n = torch.where(n > 0, n, nan)
    mean = stack("total") / safe_n
    variance = stack("m2") / safe_n
    std = variance.sqrt()
    rms = (mean * mean + variance).sqrt()
    max_abs = torch.where(n > 0, stack("max_abs"), nan)
    zero_fraction = stack("zeros").to(f64) / safe_n
    bounded = torch.tensor([s.bounded for s in sums], device=device)
    saturated_fraction = torch.where(bounded, stack("saturated").to(f64) / safe_n, nan)
    e = elements.to(f64)
    non_finite_fraction = non_finite.to(f64) / torch.where(e > 0, e, nan)
    sizes = [s.channels for s in sums]
    rows = torch.repeat_interleave(torch.arange(len(sums), device=device), torch.tensor(sizes))
    nonzero = torch.cat([s.channel_nonzero.to(device) for s in sums])
    dead = torch.zeros(len(sums), dtype=torch.int64, device=device)
    dead.index_add_(0, rows.to(device), (nonzero == 0).to(torch.int64))
    channels = torch.tensor(sizes, dtype=torch.int64, device=device)
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
