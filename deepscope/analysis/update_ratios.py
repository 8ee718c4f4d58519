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
    if len(before) != len(after):
        raise ValueError(f"{len(before)} tensors before the step but {len(after)} after")
    if not before:
        return torch.zeros(0)
    if before_norms is None:
        before_norms = frobenius_norms(before)
    with torch.no_grad():
        torch._foreach_sub_(list(before), [a.detach() for a in after])
        delta_norms = frobenius_norms(before)
        return delta_norms / before_norms.to(delta_norms.device)
