"""Integrated gradients (Sundararajan, Taly & Yan 2017).

attr = (x − b) · ∫₀¹ ∇f(b + α(x − b)) dα for the target score f and baseline b,
the integral by an n-point quadrature rule. Completeness: Σ attr = f(x) − f(b)
exactly for the true integral; the per-sample error of the quadrature is
reported. The n_steps × N path points go through the model in batches of
`batch_size` rows (the memory bound).
"""

from __future__ import annotations

import numpy as np
import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import (
    Target,
    class_scores,
    forward_rows,
    resolve_baseline,
    resolve_targets,
    rows_per_pass,
    target_gradient,
)

RULES = ("gauss_legendre", "trapezoid", "midpoint")


def path_points(n_steps: int, rule: str = "gauss_legendre") -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes α in [0, 1] and weights (summing to 1) for ∫₀¹ g(α) dα ≈ Σ w·g(α).

    gauss_legendre: exact for polynomials of degree < 2n (Captum's default);
    trapezoid: includes both ends (n ≥ 2); midpoint: the Riemann midpoint sum.
    """
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "trapezoid":
        if n_steps < 2:
            raise ValueError("the trapezoid rule needs n_steps >= 2")
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n_steps), weights
    if rule == "midpoint":
        return (np.arange(n_steps) + 0.5) / n_steps, np.full(n_steps, 1.0 / n_steps)
    raise ValueError(f"unknown integration rule {rule!r}; choose one of {', '.join(RULES)}")


def integrated_gradients(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    baseline: torch.Tensor | float | None = None,
    n_steps: int = 50,
    rule: str = "gauss_legendre",
    batch_size: int | None = None,
) -> Attribution:
    """Integrated gradients of the target score along the straight path from the baseline.

    Args:
      baseline: None (zeros), a number, one sample's shape (shared), or the inputs' shape.
      n_steps: points on the path (gradient evaluations per sample).
      rule: the quadrature rule, one of RULES.
      batch_size: rows per forward pass; by default as many as fit
        `DEFAULT_PASS_ELEMENTS` input elements for the device.
    """
    alphas, weights = path_points(n_steps, rule)
    count, sample_shape = inputs.shape[0], tuple(inputs.shape[1:])
    base = resolve_baseline(baseline, inputs)
    with torch.no_grad():
        scores = class_scores(forward_rows(model, inputs.clone()))
        base_scores = class_scores(forward_rows(model, base.clone())).expand(count, -1)
    targets = resolve_targets(target, scores)
    alphas = torch.as_tensor(alphas, device=inputs.device, dtype=inputs.dtype)
    weights = torch.as_tensor(weights, device=inputs.device, dtype=inputs.dtype)
    trailing = (1,) * len(sample_shape)
    difference = inputs.detach() - base
    total = torch.zeros_like(inputs)
    rows, per_pass = count * len(alphas), rows_per_pass(batch_size, sample_shape, inputs.device)
    for start in range(0, rows, per_pass):
        row = torch.arange(start, min(start + per_pass, rows), device=inputs.device)
        sample, step = row % count, row // count
        base_rows = base[sample] if base.shape[0] == count else base
        points = base_rows + alphas[step].reshape((-1,) + trailing) * difference[sample]
        grad, _, _ = target_gradient(model, points, targets[sample], samples=sample)
        total.index_add_(0, sample, weights[step].reshape((-1,) + trailing) * grad)
    maps = difference * total
    column = targets[:, None]
    gain = scores.gather(1, column)[:, 0] - base_scores.gather(1, column)[:, 0]
    return Attribution(
        "integrated_gradients",
        maps,
        targets,
        scores.argmax(dim=1),
        baseline=base,
        completeness_error=maps.reshape(count, -1).sum(dim=1) - gain,
        options={"n_steps": len(alphas), "rule": rule},
    )
