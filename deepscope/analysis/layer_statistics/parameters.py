"""Gradient and weight norms of parameters, in multi-tensor ops, on the device.

Norms are ‖·‖₂ of the whole tensor (Frobenius for matrices), by
`torch._foreach_norm` (half-precision tensors normed in float32, so a
float16 gradient past 65504 does not overflow). A parameter without a
gradient (grad None: frozen, or unused in this step's graph) has a NaN
gradient norm and ratio: not measured, not zero. Sparse gradients are normed
on their coalesced values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from deepscope.analysis.update_ratios import frobenius_norms

PARAMETER_STATISTICS = ("grad_norm", "weight_norm", "grad_to_weight")
"""The columns of `parameter_table`, in this order."""


def parameter_norms(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_norms [P], weight_norms [P]), float32 device tensors; NaN for a None gradient.

    Args:
      params: the parameters (or any tensors), P of them.
      grads: their gradients, P of them, None where a parameter has none;
        None: each parameter's own `.grad`.

    Raises:
      ValueError: `grads` and `params` differ in length.
    """
    params = list(params)
    grads = [p.grad for p in params] if grads is None else list(grads)
    if len(grads) != len(params):
        raise ValueError(f"{len(params)} parameters but {len(grads)} gradients")
    if not params:
        return torch.zeros(0), torch.zeros(0)
    with torch.no_grad():
        weights = frobenius_norms(params)
        # A missing gradient is normed as a 0-d NaN: its norm is NaN, in the same
        # multi-tensor call, with no index built on the host.
        missing = torch.full((), math.nan, dtype=torch.float32, device=weights.device)
        grad_norms = frobenius_norms([missing if g is None else _dense(g) for g in grads])
        return grad_norms.to(weights.device), weights


def parameter_table(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None] | None = None
) -> torch.Tensor:
    """float32 [P, 3], columns `PARAMETER_STATISTICS`: ‖g‖₂, ‖W‖₂ and ‖g‖₂/‖W‖₂.

    A zero weight gives inf (NaN with a zero gradient); a None gradient NaN.
    """
    grad_norms, weight_norms = parameter_norms(params, grads)
    return torch.stack([grad_norms, weight_norms, grad_norms / weight_norms], dim=1)


def _dense(g: torch.Tensor) -> torch.Tensor:
    g = g.detach()
    if g.is_sparse:
        return g.coalesce().values()
    return g
