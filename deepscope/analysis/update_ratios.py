"""Update-to-weight ratios ‖ΔW‖₂ / ‖W‖₂ of parameters across one optimizer step.

Karpathy's rule of thumb: near 1e-3 the learning rate suits a layer; far
below, it barely moves; far above, it is thrashing. The ratio is measured on
the true update (weights after the step minus weights before), so it is right
for momentum, Adam/AdamW and weight decay alike.

All functions use multi-tensor (`torch._foreach_*`) kernels and return device
tensors: nothing here synchronises with the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of `params` (detached, same device and dtype), made in one multi-tensor op."""
    if not params:
        return []
    with torch.no_grad():
        return torch._foreach_mul([p.detach() for p in params], 1)


def frobenius_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖t‖₂ (Frobenius for matrices) of each tensor, as a float32 vector of shape [len(tensors)]."""
    if not tensors:
        return torch.zeros(0)
    with torch.no_grad():
        tensors = [t.detach() for t in tensors]
        # Half precision is normed in float32: float16 overflows past 65504.
        half = (torch.float16, torch.bfloat16)
        low = [i for i, t in enumerate(tensors) if t.dtype in half]
        full = [i for i, t in enumerate(tensors) if t.dtype not in half]
        norms: list[torch.Tensor] = [torch.empty(0)] * len(tensors)
        if low:
            low_norms = torch._foreach_norm([tensors[i] for i in low], 2, dtype=torch.float32)
            for i, n in zip(low, low_norms):
                norms[i] = n
        if full:
            for i, n in zip(full, torch._foreach_norm([tensors[i] for i in full])):
                norms[i] = n
        device = norms[0].device
        return torch.stack([n.float().to(device) for n in norms])


def update_ratios(
    before: Sequence[torch.Tensor],
    after: Sequence[torch.Tensor],
    before_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """‖after − before‖₂ / ‖before‖₂ for each pair, a float32 vector of shape [len(before)].

    `before` is consumed: it is overwritten with `before − after` to save memory.
    A zero `before` gives inf (or NaN when the update is zero too); non-finite
    values are returned as they are, for the caller to report.

    Args:
      before: parameter values before the step (e.g. from `snapshot`).
      after: the same parameters after the step.
      before_norms: ‖before‖₂ if already known (from `frobenius_norms`).
    """
    if not before and not after:
        return torch.zeros(0)
    before_norms, delta_norms = _subtract_and_norm(before, after, before_norms)
    return delta_norms / before_norms


def _subtract_and_norm(
    before: Sequence[torch.Tensor], after: Sequence[torch.Tensor], before_norms: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(‖before‖₂, ‖before − after‖₂), overwriting `before` with before − after."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} tensors before the step but {len(after)} after")
    if before_norms is None:
        before_norms = frobenius_norms(before)
    with torch.no_grad():
        torch._foreach_sub_(list(before), [a.detach() for a in after])
        delta_norms = frobenius_norms(before)
    return before_norms.to(delta_norms.device), delta_norms


@dataclass
class UpdateMeasurement:
    """One optimizer step's update ratios and what kind of value each is (device tensors, [P]).

    ratios: float32 ‖after − before‖₂ / ‖before‖₂ as computed (NaN/inf kept).
    unchanged: bool, the parameter is bit for bit the same after the step
      (Σ|after − before| is exactly 0): it got no update.
    zero_weight: bool, ‖before‖₂ was 0 (a zero-initialised bias) and the
      parameter moved by a finite amount: the ratio is undefined (its value is inf).
    """

    ratios: torch.Tensor
    unchanged: torch.Tensor
    zero_weight: torch.Tensor


def measure_update(
    before: Sequence[torch.Tensor],
    after: Sequence[torch.Tensor],
    before_norms: torch.Tensor | None = None,
) -> UpdateMeasurement:
    """Update ratios of one step, and which parameters did not change or started at zero.

    "No update" is decided from what changed, not from gradients: a parameter
    is unchanged when Σ|after − before| is exactly 0, i.e. every element is
    equal (an exact test; a 2-norm could underflow to 0 for a tiny change). This is right for any
    optimizer, LBFGS's closure included. NaN or inf weights never count as
    unchanged (inf − inf is NaN): their ratios stay non-finite for the caller
    to report. Nothing synchronises with the host.

    `before` is consumed (overwritten with before − after), as in `update_ratios`.
    """
    if not before and not after:
        empty = torch.zeros(0)
        return UpdateMeasurement(empty, empty.bool(), empty.bool())
    before_norms, delta_norms = _subtract_and_norm(before, after, before_norms)
    with torch.no_grad():
        changes = _absolute_sums(before).to(delta_norms.device)
        unchanged = changes == 0
        moved = torch.isfinite(delta_norms) & (changes > 0)
        zero_weight = (before_norms == 0) & moved
        return UpdateMeasurement(delta_norms / before_norms, unchanged, zero_weight)


def _absolute_sums(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ|t| of each tensor as float32 [len(tensors)] (0 for an empty tensor).

    Exactly 0 only when every element is ±0: a sum of positive floats never
    rounds to 0 (it may round up to inf, which is not 0 either), where a 2-norm
    loses squares below float32's smallest normal number. Cheaper than the
    infinity norm, which has no fast multi-tensor kernel on CPU.
    """
    sums = torch._foreach_norm(list(tensors), 1)
    device = sums[0].device
    return torch.stack([n.float().to(device) for n in sums])


def shard_sums(
    before: Sequence[torch.Tensor],
    after: Sequence[torch.Tensor],
    before_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """One rank's share of a sharded step's update: float32 [2, P] sums of squares.

    Row 0 is ‖after − before‖₂² of this rank's shard of each parameter, row 1
    ‖before‖₂²; summed over the ranks (an all-reduce) they are the whole
    parameters' squares, which `combine_shard_sums` turns into the ratios. A
    shard that changed by less than float32's squares can hold (its square
    underflows to 0) contributes the smallest normal float32 instead, so that
    "unchanged" stays the exact test of `measure_update` (every element equal)
    after the sum. `before` is consumed, as in `measure_update`.
    """
    if not before and not after:
        return torch.zeros(2, 0)
    before_norms, delta_norms = _subtract_and_norm(before, after, before_norms)
    with torch.no_grad():
        changes = _absolute_sums(before).to(delta_norms.device)
        delta_squares = delta_norms.float().square()
        tiny = torch.finfo(torch.float32).tiny
        delta_squares = torch.where(
            (changes != 0) & (delta_squares == 0),
            torch.full_like(delta_squares, tiny),
            delta_squares,
        )
        return torch.stack([delta_squares, before_norms.float().square()])


def combine_shard_sums(
    delta_squares: torch.Tensor, before_squares: torch.Tensor
) -> UpdateMeasurement:
    """The update ratios of whole parameters from their shards' summed squares ([P] each)."""
    with torch.no_grad():
        delta_norms = delta_squares.float().sqrt()
        before_norms = before_squares.float().sqrt()
        unchanged = delta_squares == 0
        moved = torch.isfinite(delta_norms) & ~unchanged
        zero_weight = (before_norms == 0) & moved
        return UpdateMeasurement(delta_norms / before_norms, unchanged, zero_weight)
