"""Sums about a shift, and the exact algebra that moves them (shift algebra).

A stream's sufficient statistics are held about a per-channel shift s close
to its mean: the count n, Σ(x−s), Σ(x−s)(x−s)ᵀ and the positives, in
float64. Moving them to another shift, merging accumulators, and the means and
co-moments about the means all follow exactly from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Moments:
    """Moments of one stream about its mean (float64), as `compute` reads them."""

    mean: torch.Tensor  # [C]
    comoment: torch.Tensor  # [C, C]  Σ (x - mean)(x - mean)ᵀ
    positives: torch.Tensor  # [C]  count of x > 0
    non_finite: torch.Tensor  # []  int64, NaN/Inf values seen


@dataclass
class Sums:
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


def shift_sums(sums: Sums, shift: torch.Tensor, count: torch.Tensor) -> torch.Tensor | None:
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


def float64_sums(sums: Sums) -> Sums:
    """Float64 copies of a batch's sums, to hold and update in place."""
    non_finite = sums.non_finite
    if non_finite is None:
        non_finite = torch.zeros((), dtype=torch.int64, device=sums.shift.device)
    c = sums.shift.shape[0]
    stacked = torch.empty(c + 2, c, dtype=torch.float64, device=sums.shift.device)
    stacked[:c] = sums.raw
    stacked[c] = sums.offset
    stacked[c + 1] = sums.positives
    return Sums(
        shift=sums.shift,
        offset=stacked[c],
        raw=stacked[:c],
        positives=stacked[c + 1],
        non_finite=non_finite.to(torch.int64, copy=True),
        stacked=stacked,
    )


def moved(sums: Sums, device: torch.device) -> Sums:
    """A float64 copy of `sums` on `device`."""
    copy = float64_sums(sums)
    c = copy.shift.shape[0]
    stacked = copy.stacked.to(device, copy=True)
    return Sums(
        shift=copy.shift.to(device, copy=True),
        offset=stacked[c],
        raw=stacked[:c],
        positives=stacked[c + 1],
        non_finite=copy.non_finite.to(device, copy=True),
        stacked=stacked,
    )


def moments_about_means(
    count: torch.Tensor, streams: list[Sums | None], cross: torch.Tensor | None
) -> tuple[list[Moments], torch.Tensor | None]:
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
            Moments(
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
