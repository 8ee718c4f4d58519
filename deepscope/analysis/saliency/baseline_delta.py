"""Baseline-subtracted gradient: the gradient at the input minus the gradient at a baseline.

What the input changes relative to a reference (default: all zeros): the part
of the gradient that any input would get, the baseline's, is removed. With a
baseline shared by all samples its gradient is computed once per distinct
target class, so the extra cost is a few rows, not a second batch.
"""

from __future__ import annotations

import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import (
    Target,
    resolve_baseline,
    target_gradient,
)


def baseline_delta(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    baseline: torch.Tensor | float | None = None,
) -> Attribution:
    """maps = ∇f(x) − ∇f(baseline) for each sample's target score f; baseline_maps = ∇f(baseline).

    baseline: None (zeros), a number, one sample's shape (shared), or the inputs' shape.
    """
    return _baseline_delta(model, inputs, target, baseline, times_input=False)


def baseline_delta_x_input(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    baseline: torch.Tensor | float | None = None,
) -> Attribution:
    """maps = (∇f(x) − ∇f(baseline)) · x; baseline_maps = ∇f(baseline)."""
    return _baseline_delta(model, inputs, target, baseline, times_input=True)


def _baseline_delta(model, inputs, target, baseline, times_input: bool) -> Attribution:
    base = resolve_baseline(baseline, inputs)
    grad, scores, targets = target_gradient(model, inputs, target)
    if base.shape[0] == 1:  # shared: one baseline row per distinct target class
        classes, which = torch.unique(targets, return_inverse=True)
        rows = base.expand((len(classes),) + tuple(inputs.shape[1:]))
        base_grad, _, _ = target_gradient(model, rows, classes)
        base_grad = base_grad[which]
    else:
        base_grad, _, _ = target_gradient(model, base, targets)
    delta = grad - base_grad
    return Attribution(
        "baseline_delta_x_input" if times_input else "baseline_delta",
        delta * inputs if times_input else delta,
        targets,
        scores.argmax(dim=1),
        baseline=base,
        baseline_maps=base_grad,
    )
