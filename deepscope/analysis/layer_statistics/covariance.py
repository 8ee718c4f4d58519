"""A layer's channel covariance: sample-capped co-moments, its eigenvalues, and three metrics.

Sums (`covariance_sums`): the positions of an activation (every index but the
channel's: (N, C, H, W) has N·H·W) are its samples, rows of C values. At most
`max_samples` rows are used, a deterministic strided subsample of the
flattened positions (every ⌈rows/max_samples⌉-th, from the first). Rows with
any non-finite value (or a sum that overflows) are left out. The batch's
co-moment about its own sample mean, Σ(x − x̄)(x − x̄)ᵀ, is one matrix
product in the activation's precision (float32 for float32, float16 and
bfloat16 inputs; float64 for float64) of the rows centred about their
float32 mean (then corrected exactly to the mean), and held and merged in
float64, by Chan et al.'s parallel formula M = Mₐ + M_b + δδᵀ·nₐ·n_b/n
(δ = x̄_b − x̄ₐ).

Metrics, on the eigenvalues λ₁ ≥ … ≥ λ_C ≥ 0 of the covariance M/n:

- effective dimension, the participation ratio (Σλ)²/Σλ²: C for isotropic
  activations, 1 for rank one;
- delve saturation (Shenk et al., "Feature Space Saturation during
  Training"): k/C, k the fewest leading eigendirections whose share of the
  variance Σᵢ≤ₖλᵢ/Σλ reaches the threshold (0.99): ⌈0.99·C⌉/C for
  isotropic, 1/C for rank one;
- effective rank (Roy & Vetterli 2007): exp of the entropy of pᵢ = λᵢ/Σλ
  (0·log 0 = 0): C for isotropic, 1 for rank one.

All are NaN when Σλ = 0 (no variance, or no samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deepscope.analysis.layer_statistics.activations import reads_results

DEFAULT_MAX_SAMPLES = 4096
"""Rows (positions) a batch's covariance uses at most."""

DEFAULT_VARIANCE_THRESHOLD = 0.99
"""delve saturation's share of the variance to explain."""


@dataclass
class CovarianceSums:
    """A stream's channel co-moments (float64 device tensors), mergeable."""

    count: torch.Tensor  # int64 []: rows (samples) summed
    mean: torch.Tensor  # float64 [C]: their mean (0 when count is 0)
    comoment: torch.Tensor  # float64 [C, C]: Σ (x − mean)(x − mean)ᵀ

    @property
    def channels(self) -> int:
        """C, the number of channels."""
        return int(self.mean.shape[0])

    def merge(self, other: CovarianceSums) -> CovarianceSums:
        """Both streams' co-moments together (Chan et al.); a new object.

        Raises:
          ValueError: different channel counts.
        """
        if other.channels != self.channels:
            raise ValueError(
                f"cannot merge covariance sums of {self.channels} and {other.channels} channels"
            )
        na = self.count.to(torch.float64)
        nb = other.count.to(torch.float64)
        n = na + nb
        delta = other.mean - self.mean
        weight = na * nb / n.clamp(min=1)
        comoment = self.comoment + other.comoment
        comoment = comoment.addr(delta * weight, delta)
        mean = self.mean + delta * (nb / n.clamp(min=1))
        return CovarianceSums(count=self.count + other.count, mean=mean, comoment=comoment)


def sample_rows(x: torch.Tensor, channel_dim: int | None, max_samples: int) -> torch.Tensor:
    """The strided subsample of `x`'s positions as rows: shape [S, C], S ≤ max_samples.

    Rows are the flattened positions (channel dim removed, the others in
    order), every ⌈rows/max_samples⌉-th from the first.
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}")
    if channel_dim is None:
        flat = x.reshape(-1, 1)
    else:
        flat = x.movedim(channel_dim, -1)
        channels = flat.shape[-1]
        rows = flat.numel() // channels if channels else 0
        if rows > max_samples:
            stride = -(-rows // max_samples)
            index = torch.arange(0, rows, stride, device=x.device)
            coords = torch.unravel_index(index, flat.shape[:-1])
            return flat[coords]
        return flat.reshape(-1, channels)
    rows = flat.shape[0]
    if rows > max_samples:
        return flat[:: -(-rows // max_samples)]
    return flat


def covariance_sums(
    x: torch.Tensor, channel_dim: int | None, max_samples: int = DEFAULT_MAX_SAMPLES
) -> CovarianceSums:
    """The channel co-moments of activation `x` over at most `max_samples` of its positions.

    Args:
      x: a floating-point activation, e.g. (N, C, H, W) or (N, L, C).
      channel_dim: its channel dimension, or None for one channel.
      max_samples: the most rows used (the strided subsample above).

    Raises:
      ValueError: `x` is not floating point, `channel_dim` out of range, or a
        bad `max_samples`.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(
            "covariance sums need a floating-point tensor, got "
            f"{getattr(x, 'dtype', type(x).__name__)}"
        )
    if channel_dim is not None and not -x.ndim <= channel_dim < x.ndim:
        raise ValueError(
            f"channel_dim {channel_dim} is out of range for an activation of shape {tuple(x.shape)}"
        )
    with torch.no_grad():
        rows = sample_rows(x.detach(), channel_dim, max_samples)
        work = torch.float64 if rows.dtype == torch.float64 else torch.float32
        rows = rows.to(work)
        samples = rows.shape[0]
        # A row's sum is finite when all its values are (or it overflows: dropped too).
        finite = torch.isfinite(rows.sum(dim=1))
        # On the CPU reading a result waits for nothing: all-finite rows skip the masking.
        clean = reads_results(rows.device) and bool(finite.all())
        if clean:
            count = torch.full((), samples, dtype=torch.int64, device=rows.device)
        else:
            rows = torch.where(finite[:, None], rows, 0)
            count = finite.sum()
        n = count.to(torch.float64)
        guess = rows.sum(dim=0) / n.clamp(min=1).to(work)
        centered = rows - guess
        if not clean:
            centered = torch.where(finite[:, None], centered, 0)
        comoment = (centered.t() @ centered).to(torch.float64)
        # Exactly about the mean: Σ(x − g) = n(x̄ − g) =: d, so M = Σ(x − g)(x − g)ᵀ − ddᵀ/n.
        d = centered.sum(dim=0, dtype=torch.float64)
        inverse = 1.0 / n.clamp(min=1)
        comoment.addr_(d * inverse, d, alpha=-1)
        mean = guess.to(torch.float64) + d * inverse
        return CovarianceSums(count=count, mean=mean, comoment=comoment)


def covariance_eigenvalues(sums: CovarianceSums) -> torch.Tensor:
    """Eigenvalues of the covariance M/n, descending, clipped at 0 (float64 [C], device).

    By `torch.linalg.eigvalsh`, which reads the lower triangle. NaN when no
    rows were summed.
    """
    return covariance_eigenvalues_many([sums])[0]


def covariance_eigenvalues_many(sums: Sequence[CovarianceSums]) -> list[torch.Tensor]:
    """`covariance_eigenvalues` of each (a list of float64 [C_i] device tensors)."""
    out: list[torch.Tensor | None] = [None] * len(sums)
    groups: dict[tuple[int, torch.device], list[int]] = {}
    for i, s in enumerate(sums):
        groups.setdefault((s.channels, s.comoment.device), []).append(i)
    for (channels, device), members in groups.items():
        if channels == 0:
            for i in members:
                out[i] = torch.zeros(0, dtype=torch.float64, device=device)
            continue
        counts = torch.stack([sums[i].count for i in members]).to(torch.float64)
        scales = torch.where(counts > 0, 1.0 / counts.clamp(min=1), math.nan)
        for row, i in enumerate(members):
            # One eigvalsh per matrix: on the CPU a batched call is slower than a loop.
            eigenvalues = torch.linalg.eigvalsh(sums[i].comoment)
            out[i] = eigenvalues.flip(0).clamp_(min=0).mul_(scales[row])
    return out  # type: ignore[return-value]


def effective_dimension(eigenvalues: torch.Tensor) -> torch.Tensor:
    """The participation ratio (Σλ)²/Σλ² of `eigenvalues` (0-d float64 tensor; NaN if Σλ = 0)."""
    lam = eigenvalues.to(torch.float64)
    total = lam.sum()
    squares = (lam * lam).sum()
    return torch.where(total > 0, total * total / squares, math.nan)


def delve_saturation(
    eigenvalues: torch.Tensor, threshold: float = DEFAULT_VARIANCE_THRESHOLD
) -> torch.Tensor:
    """k/C: the fewest leading eigendirections explaining `threshold` of the variance, over C.

    `eigenvalues` in any order (sorted here). A share within C·ε(float64) of
    the threshold counts as reaching it, so isotropic eigenvalues give
    exactly ⌈threshold·C⌉/C. 0-d float64 tensor; NaN if Σλ = 0.

    Raises:
      ValueError: a threshold outside (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"variance threshold must be in (0, 1], got {threshold!r}")
    lam = eigenvalues.to(torch.float64).sort(descending=True).values
    c = lam.shape[0]
    if c == 0:
        return torch.full((), math.nan, dtype=torch.float64, device=lam.device)
    total = lam.sum()
    cumulative = lam.cumsum(0)
    slack = c * torch.finfo(torch.float64).eps * total
    reached = cumulative >= threshold * total - slack
    k = (~reached).sum() + 1
    return torch.where(total > 0, k.clamp(max=c).to(torch.float64) / c, math.nan)


def effective_rank(eigenvalues: torch.Tensor) -> torch.Tensor:
    """exp(−Σ pᵢ log pᵢ), pᵢ = λᵢ/Σλ (Roy & Vetterli 2007); 0-d float64 tensor, NaN if Σλ = 0."""
    lam = eigenvalues.to(torch.float64)
    total = lam.sum()
    p = lam / total
    entropy = -torch.special.xlogy(p, p).sum()
    return torch.where(total > 0, entropy.exp(), math.nan)


def covariance_metrics(
    eigenvalues: torch.Tensor, threshold: float = DEFAULT_VARIANCE_THRESHOLD
) -> torch.Tensor:
    """[effective_dimension, saturation, effective_rank] (float64 [3], device): the columns
    `COVARIANCE_STATISTICS` of the activation table."""
    return torch.stack(
        [
            effective_dimension(eigenvalues),
            delve_saturation(eigenvalues, threshold),
            effective_rank(eigenvalues),
        ]
    )
