"""Linear centred kernel alignment (CKA) between two representations (Kornblith et al. 2019).

For representations X [n, p] and Y [n, q] of the same n samples, centred over
the samples (X_c = X − mean):

  CKA(X, Y) = ‖Y_cᵀX_c‖²_F / (‖X_cᵀX_c‖_F · ‖Y_cᵀY_c‖_F)
            = ⟨K_c, L_c⟩_F / (‖K_c‖_F · ‖L_c‖_F),  K_c = H·XXᵀ·H, L_c = H·YYᵀ·H

(H = I − 11ᵀ/n), in [0, 1]; 1 for Y = X·Q·s (an orthogonal transform Q and an
isotropic scale s, also between layers of different widths), invariant to a
shift of either. Two ways in, for two uses:

- From co-moments (`cka_from_comoments`): the p×p, q×q and p×q co-moments
  about the means, which the correlation accumulator holds (cross mode) with
  every sample position as a sample and the channels as features: the CKA of
  two layers compared channel by channel (what `compare()` pairs), in
  O(p² + q² + pq) once the co-moments are there.
- From per-sample Gram matrices (`centered_gram`, `cka_matrix`): each probe
  input one sample, its whole output flattened (C·H·W) the features, so
  layers of any shapes compare: the layer × layer CKA matrix between two
  networks (or two checkpoints) on the same probe, one n×n Gram per layer.

A representation with no variance (K_c = 0) has no CKA with anything: NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def cka_from_comoments(
    cross: np.ndarray | torch.Tensor,
    within_x: np.ndarray | torch.Tensor,
    within_y: np.ndarray | torch.Tensor,
) -> float:
    """Linear CKA from co-moments about the means (float64).

    Args:
      cross: Σ(x − x̄)(y − ȳ)ᵀ [p, q]; within_x: Σ(x − x̄)(x − x̄)ᵀ [p, p];
        within_y: [q, q] (any common scale: sums or covariances).

    Returns ‖cross‖²_F / (‖within_x‖_F·‖within_y‖_F), NaN when either is 0.
    """
    cross, within_x, within_y = (
        np.asarray(m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else m, np.float64)
        for m in (cross, within_x, within_y)
    )
    if within_x.shape != (cross.shape[0],) * 2 or within_y.shape != (cross.shape[1],) * 2:
        raise ValueError(
            f"co-moments of shapes cross [p, q], within_x [p, p], within_y [q, q] expected, "
            f"got {cross.shape}, {within_x.shape}, {within_y.shape}"
        )
    scale = np.linalg.norm(within_x) * np.linalg.norm(within_y)
    if not scale > 0:
        return float("nan")
    return float(np.sum(cross * cross) / scale)


def centered_gram(features: torch.Tensor) -> torch.Tensor:
    """K_c = H·XXᵀ·H [n, n] (float64) of one representation, X the samples' flattened outputs.

    features: [n, ...] (every dim after the first is flattened: a conv
    output's C·H·W); computed as X_c·X_cᵀ with X centred over the samples in
    float64, on the features' device.
    """
    if features.ndim < 2:
        raise ValueError(
            f"features must be [n, ...] with at least one feature dim, got {tuple(features.shape)}"
        )
    x = features.detach().reshape(features.shape[0], -1).to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def cka_matrix(grams_a: Sequence[torch.Tensor], grams_b: Sequence[torch.Tensor]) -> np.ndarray:
    """CKA between every layer of A and every layer of B: [len(grams_a), len(grams_b)].

    grams_*: `centered_gram`s of the layers on the same n probe samples.
    Entry (i, j) = ⟨K_i, L_j⟩_F / (‖K_i‖_F·‖L_j‖_F): one matrix product of
    the flattened Grams, float64 numpy; NaN where a Gram is zero.
    """
    if not grams_a or not grams_b:
        raise ValueError("cka_matrix needs at least one Gram matrix on each side")
    n = grams_a[0].shape[0]
    for g in [*grams_a, *grams_b]:
        if tuple(g.shape) != (n, n):
            raise ValueError(
                f"every Gram must be [n, n] on the same {n} samples, got {tuple(g.shape)}"
            )
    a = torch.stack([g.reshape(-1).to(torch.float64).cpu() for g in grams_a])
    b = torch.stack([g.reshape(-1).to(torch.float64).cpu() for g in grams_b])
    norms_a = torch.linalg.vector_norm(a, dim=1)
    norms_b = torch.linalg.vector_norm(b, dim=1)
    inner = a @ b.T
    scale = norms_a[:, None] * norms_b[None, :]
    out = torch.where(scale > 0, inner / scale.clamp(min=1e-300), torch.full_like(inner, np.nan))
    return out.numpy()
