"""Exact singular values of convolutions as operators (Sedghi, Gupta & Long 2019).

A convolution layer applies a linear operator A to its input; its singular
values (and so its Lipschitz constant σ_max) are not those of the unfolded
(im2col) weight matrix that `analysis.spectrum` decomposes. This module
computes A's singular values exactly, for **circular** padding, on an input of
`input_size` (spatial sizes n_1…n_d), for Conv1d/Conv2d/Conv3d weights
[c_out, c_in/groups, k_1…k_d] with stride, groups and dilation.

What is computed (the operator A)
  y[o, m] = Σ_{i, k} W[o, i, k] · x[i, (s·m + δ·k) mod n]  for m ∈ Z_{n/s}
  (per dim; s the stride, δ the dilation). Padding only shifts the input
  circularly (a permutation), which leaves the singular values unchanged, so
  they do not depend on the padding amount. A maps c_in·∏n inputs to
  c_out·∏(n/s) outputs.

How (Sedghi et al. 2019, with strides in polyphase form)
  - Stride s: writing k = s·q + r and splitting the input into its s^d phases
    x_r[j] = x[s·j + r], A is a stride-1 circular convolution on Z_{n/s} with
    c_in·s^d input channels, kernel W'[o, (i, r), q] = W[o, i, s·q + r]. (The
    same thing as folding the s^d frequencies that alias onto each output
    frequency.) This needs s to divide n.
  - The unitary DFT block-diagonalises a stride-1 circular convolution: A's
    singular values are the union over the N^d frequencies f (N = n/s) of the
    singular values of the c_out × c_in·s^d matrices
    Ŵ'(f) = Σ_q W'[:, :, q] · exp(−2πi⟨f, q⟩/N). Taps that wrap around
    (kernel longer than N) are summed modulo N first: exact as well.
  - The weight is real, so Ŵ'(−f) = conj(Ŵ'(f)) has the same singular values:
    only one frequency of each conjugate pair is decomposed (about half of
    them; a little fewer than rfftn's half spectrum), and its values are
    counted twice (once for a self-conjugate f: each coordinate 0 or N/2).
  - groups: A is block-diagonal over the groups (up to a permutation of
    channels), so its singular values are the union over the groups.

Zero padding (what `nn.Conv2d` does by default) is NOT what is computed: the
zero-padded operator is the circular one with the wrapped-around taps removed,
a different matrix. Its norm is typically lower (measured on a trained layer at
n = 8: 6.67 zero-padded vs 6.99 circular; `benchmarks/bench_conv_operator.py`
prints the comparison), but the circular value is not a proven upper bound for
it. Results say so in `padding_rule` ("circular").

Operator norm on a grid: σ_max of the frequency matrices varies smoothly with
f, so `conv_operator_norm` evaluates them on a grid of min(grid, N) frequencies
per dim only: it is the exact norm of the circular operator on an input of
s·g per dim (the sampled frequencies are a subset of n's when g divides N, so
it is then a lower bound of the norm at n; measured within 0.15% of 224×224's
at 16×16).

Precision: float32 (and half) weights are transformed and decomposed in
float32/complex64 (`torch.linalg.svdvals`: absolute errors of a few
eps32·σ_max), float64 weights in float64/complex128. The operator norm is
decomposed densely or by batched Lanczos (`conv_operator_norm`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

PADDING_RULE = "circular"

# Quantile levels of the whole spectrum stored by default (for its histogram).
DEFAULT_QUANTILE_LEVELS: tuple[float, ...] = tuple(i / 64 for i in range(65))

# Lanczos' default residual tolerance on σ_max² (relative), see conv_operator_norm:
# it bounds σ_max's error by rtol/2 = 0.15%, the 16x16 grid's own error against
# 224x224 (measured); the Ritz value itself was within 1e-5 at this tolerance.
NORM_RTOL = 3e-3

# A warm-started Lanczos (`NormWarmStart`) begins at the last top vectors plus this
# much of a random unit vector, and takes at least this many steps (then stops
# frequencies that cannot hold the maximum, as a cold one does after 4).
WARM_MIX = 1e-3
WARM_MIN_STEPS = 2
# Lanczos tests for convergence every this many steps (a few small eigh calls).
CHECK_EVERY = 1

_CONV_KINDS = {1: "Conv1d", 2: "Conv2d", 3: "Conv3d"}


@dataclass
class OperatorSpectrumResult:
    """A convolution's operator spectrum: the fields of `deepscope.proto.OperatorSpectrum`.

    input_size: spatial sizes n of the input the operator acts on.
    stride: per spatial dim.
    padding_rule: "circular" (exact for circular padding; an approximation for
      zero padding, see the module's docstring).
    operator_norm: σ_max, the layer's Lipschitz constant (ℓ2 → ℓ2) under
      `padding_rule`: exact at `input_size` when `norm_only` is false, else on
      the frequency grid `grid_size`.
    norm_only: only `operator_norm`, `frobenius_norm` and `stable_rank` were measured.
    top_values: float32 numpy [k], descending: the k largest singular values
      (empty when `norm_only`); all of them when k == count.
    quantiles: float32 numpy [Q], the spectrum's quantiles at `quantile_levels`
      (numpy's linear interpolation over all `count` values); empty when `norm_only`.
    quantile_levels: each in [0, 1].
    count: the operator's number of singular values,
      groups · (∏N) · min(c_out/groups, c_in/groups · ∏s), N = n/s.
    frobenius_norm: ‖A‖_F at `input_size`, exact from the kernel:
      √(∏N) · ‖W‖_F when every kernel tap lands on its own input position
      (kernel no longer than n), in general √(∏N) times the norm of the kernel
      with its wrapped taps summed.
    stable_rank: ‖A‖²_F / σ_max² (of the whole operator, up to count); divide
      by ∏N for a per-frequency value comparable with the im2col matrix's.
    grid_size: the frequency grid (output frequencies, per dim) the values
      were computed on: N when not `norm_only`, else min(grid, N).
    seconds: host seconds spent.
    error: non-empty when the spectrum could not be measured (then the
      numbers are NaN): what happened.
    """

    input_size: tuple[int, ...]
    stride: tuple[int, ...]
    operator_norm: float
    norm_only: bool
    count: int
    frobenius_norm: float
    stable_rank: float
    grid_size: tuple[int, ...]
    seconds: float = 0.0
    padding_rule: str = PADDING_RULE
    top_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    quantiles: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    quantile_levels: tuple[float, ...] = ()
    error: str = ""

    @property
    def frequencies(self) -> int:
        """∏N, the number of output frequencies at `input_size`."""
        return math.prod(n // s for n, s in zip(self.input_size, self.stride))

    @property
    def stable_rank_per_frequency(self) -> float:
        """`stable_rank` / ∏N: comparable with the im2col matrix's stable rank."""
        return self.stable_rank / self.frequencies


# ---------------------------------------------------------------------------
# Arguments


def _spatial_dims(weight: torch.Tensor) -> int:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    d = weight.dim() - 2
    if d not in _CONV_KINDS:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)}: a Conv1d/2d/3d weight "
            "[c_out, c_in/groups, k_1…k_d] has 3 to 5 dimensions; pass the "
            "conv module's .weight"
        )
    if not weight.is_floating_point():
        raise ValueError(f"weight must be floating point, got {weight.dtype}")
    if any(s == 0 for s in weight.shape):
        raise ValueError(f"weight of shape {tuple(weight.shape)} is empty")
    return d


def _per_dim(value: int | Sequence[int], d: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * d
    else:
        try:
            values = tuple(int(v) for v in value)  # type: ignore[union-attr]
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a sequence of {d} ints, got {value!r}"
            ) from None
        if len(values) == 1:
            values = values * d
        if len(values) != d:
            raise ValueError(
                f"{name}={value!r} has {len(values)} entries; the weight has {d} spatial "
                f"dims: pass one int or {d} ints"
            )
    if any(v < minimum for v in values):
        raise ValueError(f"{name}={value!r}: every entry must be at least {minimum}")
    return values


def _check_groups(weight: torch.Tensor, groups: int) -> int:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if weight.shape[0] % groups:
        raise ValueError(
            f"groups={groups} does not divide the weight's c_out={weight.shape[0]}; "
            "pass the conv module's groups"
        )
    return groups


@dataclass(frozen=True)
class _Args:
    d: int
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


def _args(weight, stride, groups, dilation) -> _Args:
    d = _spatial_dims(weight)
    return _Args(
        d=d,
        stride=_per_dim(stride, d, "stride"),
        dilation=_per_dim(dilation, d, "dilation"),
        groups=_check_groups(weight, groups),
    )


def _input_size(input_size, a: _Args, *, exact: bool) -> tuple[int, ...]:
    n = _per_dim(input_size, a.d, "input_size")
    if exact:
        bad = [(ni, si) for ni, si in zip(n, a.stride) if ni % si]
        if bad:
            raise ValueError(
                f"input_size={n} is not divisible by stride={a.stride}: the circular "
                "strided operator is block-diagonalised by the DFT only when the stride "
                "divides the input size. Pass an input size that is a multiple of the "
                "stride (e.g. the nearest one), or use conv_operator_norm, which works "
                "on a frequency grid"
            )
    return n


# ---------------------------------------------------------------------------
# The symbol: Ŵ'(f) on a grid of output frequencies


def _polyphase_kernel(weight: torch.Tensor, a: _Args) -> torch.Tensor:
    """W'[g, o, (i, r), q]: [groups, c_out/groups, c_in/groups·∏s, Q_1…Q_d]."""
    w = weight
    d = a.d
    if any(dl > 1 for dl in a.dilation):
        k = w.shape[2:]
        size = [dl * (kk - 1) + 1 for dl, kk in zip(a.dilation, k)]
        wd = w.new_zeros(w.shape[:2] + tuple(size))
        wd[(slice(None), slice(None)) + tuple(slice(None, None, dl) for dl in a.dilation)] = w
        w = wd
    c_out, c_in = w.shape[:2]
    k = w.shape[2:]
    if any(s > 1 for s in a.stride):
        pads = []
        for kk, s in zip(reversed(k), reversed(a.stride)):
            pads += [0, (-kk) % s]
        w = torch.nn.functional.pad(w, pads)
        q = [w.shape[2 + j] // s for j, s in enumerate(a.stride)]
        # [c_out, c_in, Q1, s1, Q2, s2, ...] -> [c_out, c_in, s1.., Q1..]
        shape = [c_out, c_in]
        for qj, s in zip(q, a.stride):
            shape += [qj, s]
        w = w.reshape(shape)
        perm = [0, 1] + [3 + 2 * j for j in range(d)] + [2 + 2 * j for j in range(d)]
        w = w.permute(perm)
        # Phases r >= k (a kernel shorter than the stride, e.g. a 1x1 stride-2
        # shortcut) see no tap: their columns are zero and are left out (the
        # zero singular values they would add are put back by the callers).
        phases = [min(s, kk) for s, kk in zip(a.stride, k)]
        w = w[(slice(None), slice(None)) + tuple(slice(0, p) for p in phases)]
        w = w.reshape([c_out, c_in * math.prod(phases)] + q)
    g = a.groups
    return w.reshape((g, c_out // g) + tuple(w.shape[1:]))


def _fold(w: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Sum the taps of the last len(grid) dims modulo the grid (exact on the circle)."""
    d = len(grid)
    for j, gj in enumerate(grid):
        axis = w.dim() - d + j
        qj = w.shape[axis]
        if qj <= gj:
            continue
        pad = [0, 0] * (w.dim() - 1 - axis) + [0, (-qj) % gj]
        w = torch.nn.functional.pad(w, pad)
        w = w.reshape(w.shape[:axis] + (w.shape[axis] // gj, gj) + w.shape[axis + 1 :]).sum(axis)
    return w


def _symbol(weight: torch.Tensor, a: _Args, grid: tuple[int, ...], dtype: torch.dtype):
    """Frequency matrices, one per conjugate pair of frequencies, and their multiplicities.

    Returns (matrices [groups, F, rows, cols] complex, multiplicity [F] int64
    on the host, folded kernel norm² (float)). Along a dim where the folded
    kernel has one tap the matrices do not depend on the frequency: that dim
    is evaluated once, its N frequencies counted in the multiplicity. Of the
    other frequencies one of each pair f, −f is kept (`_half_frequencies`):
    F = (∏g + number of self-conjugate f)/2, fewer than rfftn's half grid. The
    DFT of the few taps is one real matrix product (`_dft_matrix`): many tiny
    FFTs cost far more (measured 6x on a 512x256 stride-2 kernel).
    """
    w = _polyphase_kernel(weight.detach().to(dtype), a)
    w = _fold(w, grid)
    fro2 = float(w.double().pow(2).sum())
    d = a.d
    taps = tuple(w.shape[w.dim() - d :])
    evaluated = tuple(1 if t == 1 else g for t, g in zip(taps, grid))
    constant = math.prod(g for t, g in zip(taps, grid) if t == 1)
    groups, rows, cols = w.shape[:3]
    freqs, mult = _half_frequencies(evaluated)
    dft = _dft_matrix(taps, freqs, evaluated, dtype, w.device)  # [2F, T]: cos, then −sin
    f = dft.shape[0] // 2
    flat = w.reshape(groups * rows * cols, math.prod(taps))
    both = dft @ flat.mT  # [2F, groups·rows·cols]
    spec = torch.complex(both[:f], both[f:]).view(f, groups, rows, cols).transpose(0, 1)
    return spec, mult * constant, fro2


def _half_frequencies(sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """One frequency of each conjugate pair f, −f (mod sizes) and its multiplicity.

    A real kernel's matrices at f and −f are complex conjugates, with the same
    singular values. Keeps f when f ≤ (−f mod sizes) in row-major order; the
    multiplicity is 1 for a self-conjugate f (every coordinate 0 or half its
    size), else 2. Returns (frequencies [F, d] int64, multiplicity [F] int64).
    """
    axes = [torch.arange(g) for g in sizes]
    freqs = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(sizes))
    size = torch.tensor(sizes)
    mirror = torch.remainder(-freqs, size)
    weights = torch.tensor([math.prod(sizes[j + 1 :]) for j in range(len(sizes))])
    flat, flat_mirror = freqs @ weights, mirror @ weights  # row-major positions
    kept = flat <= flat_mirror
    mult = torch.where(flat == flat_mirror, 1, 2)
    return freqs[kept], mult[kept].to(torch.int64)


def _dft_matrix(
    taps: tuple[int, ...],
    freqs: torch.Tensor,
    sizes: tuple[int, ...],
    dtype: torch.dtype,
    device,
) -> torch.Tensor:
    """[2F, T]: cos and −sin of 2π⟨f, t⟩/g for the frequencies f [F, d] × taps t.

    Taps in row-major order (the kernel's); phases reduced modulo 1 in float64
    before the trigonometry, so large grids lose nothing.
    """
    axes_t = [torch.arange(t, dtype=torch.float64) for t in taps]
    offsets = torch.stack(torch.meshgrid(*axes_t, indexing="ij"), -1).reshape(-1, len(taps))
    scaled = freqs.to(torch.float64) / torch.tensor(sizes, dtype=torch.float64)
    turns = torch.remainder(scaled @ offsets.T, 1.0)  # [F, T] in [0, 1)
    angle = 2 * math.pi * turns
    return torch.cat([torch.cos(angle), -torch.sin(angle)]).to(device=device, dtype=dtype)


def _decompose(matrices: torch.Tensor) -> torch.Tensor:
    """Singular values [..., min(rows, cols)] (`torch.linalg.svdvals`, the input's precision)."""
    values = torch.linalg.svdvals(matrices)
    if not bool(torch.isfinite(values).all()):
        raise torch.linalg.LinAlgError("the SVD returned non-finite singular values")
    return values


class _TapOperator:
    """The frequency matrices M_f = Σ_t W_t·φ_t(f) of one group, applied from the taps.

    w: the folded kernel [rows, cols, T] (real); phases [T, F] complex, φ_t(f)
    = exp(−2πi⟨f, t⟩/g) (`_dft_matrix`). `apply` maps a vector per frequency,
    [F, n] complex, to MᴴM's (n = cols) or MMᴴ's (n = rows: the smaller side)
    image. Each product is one real matrix product [rows, cols·T] × [cols·T, 2F]
    over all frequencies at once (BLAS 3): it reads the T real tap matrices,
    not F complex ones (for ResNet-18's layers 2-3x faster than products with
    the materialised matrices, 4x for stride-2 polyphase kernels).
    """

    def __init__(self, w: torch.Tensor, phases: torch.Tensor):
        self.rows, self.cols, self.taps = w.shape
        self.wm = w.reshape(self.rows, self.cols * self.taps)
        self.wt = self.wm.T.contiguous()
        self.phases = phases
        self.input_side = self.cols <= self.rows
        self.dim = self.cols if self.input_side else self.rows

    def keep(self, index: torch.Tensor) -> None:
        self.phases = self.phases[:, index]

    def _m(self, q: torch.Tensor) -> torch.Tensor:  # [F, cols] -> [F, rows]
        x = q.T.unsqueeze(1) * self.phases.unsqueeze(0)  # [cols, T, F]
        y = self.wm @ torch.view_as_real(x).reshape(self.cols * self.taps, -1)
        return torch.view_as_complex(y.view(self.rows, -1, 2)).T

    def _mh(self, y: torch.Tensor) -> torch.Tensor:  # [F, rows] -> [F, cols]
        z = self.wt @ torch.view_as_real(y.T.contiguous()).reshape(self.rows, -1)
        z = torch.view_as_complex(z.view(self.cols, self.taps, -1, 2))  # [cols, T, F]
        return (z * self.phases.conj().unsqueeze(0)).sum(1).T

    def apply(self, q: torch.Tensor) -> torch.Tensor:
        return self._mh(self._m(q)) if self.input_side else self._m(self._mh(q))


def _lanczos_top(
    op: _TapOperator, rtol: float, seed: int = 0, start: torch.Tensor | None = None
) -> tuple[float, torch.Tensor]:
    """The largest σ_max over the frequencies of `op`, by Lanczos on each MᴴM, batched.

    One Lanczos recursion per frequency, all advanced together (one `op.apply`
    per step), with full reorthogonalisation. A frequency stops when its
    largest Ritz value θ has residual bound ‖MᴴMy − θy‖ ≤ rtol·θ (the
    Hermitian residual bound: an eigenvalue of MᴴM lies within it; θ, a lower
    bound, is typically far closer: measured 1e-6..1e-8 relative at rtol
    1e-3), or after n steps (then exact); and, after 4 steps, once θ plus its
    residual is below the largest θ so far, a lower bound of the answer (its
    own σ_max is below the answer unless its Ritz value is still far from its
    top eigenvalue). Random start vectors from a fixed seed: deterministic.
    start ([F, n] complex, e.g. the Ritz vectors of the same layer's last
    measurement): begin there instead, mixed with WARM_MIX of the random
    vector (so no direction is missing), and take at least WARM_MIN_STEPS
    steps, the early stop above from then on; a few steps then suffice while
    the weights change slowly (measured on ResNet-18 moved by 1.4%: norms
    within 2e-5 of a cold start's).

    Returns (σ_max, the largest over the frequencies, as a float; the top Ritz
    vector of each frequency [F, n] complex, unit norm, when it stopped).
    """
    batch, n = op.phases.shape[1], op.dim
    device = op.wm.device
    real = op.wm.dtype
    gen = torch.Generator().manual_seed(seed)
    q = torch.complex(
        torch.randn(batch, n, generator=gen, dtype=real),
        torch.randn(batch, n, generator=gen, dtype=real),
    ).to(device)
    q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True)
    min_steps, prune_from = 0, 4
    if start is not None:
        start = start.to(device=device, dtype=q.dtype)
        start = start / torch.linalg.vector_norm(start, dim=1, keepdim=True).clamp_min(
            torch.finfo(real).tiny
        )
        q = start + WARM_MIX * q
        q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True)
        min_steps = prune_from = WARM_MIN_STEPS
    vectors = q.clone()
    best = torch.zeros(batch, dtype=torch.float64)
    index = torch.arange(batch)
    basis = q.unsqueeze(2)  # [F, n, k]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    beta_prev = None
    steps = 0
    while True:
        qj = basis[:, :, -1]
        w = op.apply(qj)
        alpha = (qj.conj() * w).sum(1, keepdim=True).real
        w = w - alpha * qj
        if beta_prev is not None:
            w = w - beta_prev * basis[:, :, -2]
        w = w - (basis @ (basis.mH @ w.unsqueeze(2))).squeeze(2)
        beta = torch.linalg.vector_norm(w, dim=1, keepdim=True)
        alphas.append(alpha.view(-1).double().cpu())
        betas.append(beta.view(-1).double().cpu())
        steps += 1
        done = steps >= n
        if steps % CHECK_EVERY == 0 or done:
            a = torch.stack(alphas, 1)
            b = torch.stack(betas, 1)
            t = (
                torch.diag_embed(a)
                + torch.diag_embed(b[:, :-1], 1)
                + torch.diag_embed(b[:, :-1], -1)
            )
            theta, y = torch.linalg.eigh(t)
            top = theta[:, -1]
            if not bool(torch.isfinite(top).all()):
                raise torch.linalg.LinAlgError("Lanczos met a non-finite value")
            best[index] = top
            ritz = (basis @ y[:, :, -1:].to(device=device, dtype=basis.dtype)).squeeze(2)
            vectors[index.to(device)] = ritz
            residual = (b[:, -1] * y[:, -1, -1]).abs()
            going = residual > rtol * top.abs()
            if steps >= prune_from:
                going &= top + residual >= best.max()
            if steps < min_steps:
                going = torch.ones_like(going)
            if done or not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().view(-1)
                on_device = keep.to(device)
                index, basis = index[keep], basis[on_device]
                op.keep(on_device)
                w, beta = w[on_device], beta[on_device]
                alphas = [x[keep] for x in alphas]
                betas = [x[keep] for x in betas]
        beta_prev = beta
        basis = torch.cat([basis, (w / beta.clamp_min(torch.finfo(real).tiny)).unsqueeze(2)], 2)
    return math.sqrt(max(float(best.max()), 0.0)), vectors


# Frequency matrices whose smaller side is at most this many times the kernel's
# taps are decomposed densely for the norm: a Lanczos step costs about
# 4·F·rows·cols·T multiply-adds (`_TapOperator`, 20-30 steps), a dense
# decomposition about 8·F·rows·cols·min(rows, cols); measured on ResNet-18's
# layers, dense was faster up to 32 channels at 3x3 (T = 9: 16 vs 21 ms at 32,
# 37 vs 16 ms at 64 channels on a 16x16 grid).
_DENSE_NORM_SIDE_PER_TAP = 4


def _compute_dtype(weight: torch.Tensor) -> torch.dtype:
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------
# Public functions


def conv_singular_values(
    weight: torch.Tensor,
    input_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    top_k: int | None = None,
) -> torch.Tensor:
    """All singular values of a convolution's circular operator, descending.

    Args:
      weight: a Conv1d/2d/3d weight [c_out, c_in/groups, k_1…k_d].
      input_size: the input's spatial sizes n (one int for all dims, or d ints);
        each must be divisible by the stride.
      stride, dilation: per dim (one int or d ints), as the conv module's.
      groups: the conv module's groups.
      top_k: return only the top_k largest (all when None or larger than their number).

    Returns:
      A 1-D tensor on the weight's device, float64 for float64 weights, else
      float32, of length count = groups·∏(n/s)·min(c_out/groups, c_in/groups·∏s)
      (or top_k), with each conjugate frequency pair's values counted twice.
      See the module's docstring for what is computed (circular padding).

    Raises:
      ValueError/TypeError: bad weight shape, sizes, stride not dividing n, bad groups.
    """
    a = _args(weight, stride, groups, dilation)
    n = _input_size(input_size, a, exact=True)
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    grid = tuple(ni // si for ni, si in zip(n, a.stride))
    with torch.no_grad():
        values, mult = _half_values(weight, a, grid)
        return _expand_sorted(values, mult, top_k, _count(weight, a, grid))


def _half_values(weight: torch.Tensor, a: _Args, grid: tuple[int, ...]):
    """Singular values [groups, F, r] of the half-spectrum matrices, and mult [F]."""
    dtype = _compute_dtype(weight)
    spec, mult, _ = _symbol(weight, a, grid, dtype)
    return _decompose(spec), mult


def _expand_sorted(
    values: torch.Tensor, mult: torch.Tensor, top_k: int | None, count: int
) -> torch.Tensor:
    """All `count` values (or the top_k) descending: each counted `mult` times, and
    the zeros of left-out zero columns appended."""
    groups, f, r = values.shape
    counts = mult.to(values.device).view(1, f, 1).expand(groups, f, r).reshape(-1)
    flat = values.reshape(-1)
    if not bool(torch.isfinite(flat).all()):
        raise torch.linalg.LinAlgError("the decomposition returned non-finite singular values")
    want = count if top_k is None else min(int(top_k), count)
    if want < flat.numel():
        # The top `want` values with multiplicity are among the top `want` entries.
        top, idx = torch.topk(flat, want)
        out = torch.repeat_interleave(top, counts[idx])
    else:
        order = torch.argsort(flat, descending=True)
        out = torch.repeat_interleave(flat[order], counts[order])
    out = out[:want]
    if out.numel() < want:
        out = torch.cat([out, out.new_zeros(want - out.numel())])
    return out


def conv_operator_norm(
    weight: torch.Tensor,
    input_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    grid: int | Sequence[int] = 16,
    method: str = "auto",
    rtol: float = NORM_RTOL,
    warm_start: NormWarmStart | None = None,
) -> float:
    """σ_max of a convolution's circular operator, on a coarse frequency grid.

    Evaluates the frequency matrices at g = min(grid, ⌈n/s⌉) output frequencies
    per dim: the operator norm of the circular convolution on an input of s·g
    per dim. σ_max depends little on n (16×16 is within 0.15% of 224×224 on
    ResNet-18 layers); when g divides n/s it is a lower bound of the norm at n.
    The stride need not divide n here.

    method: "dense" decomposes every frequency matrix (svdvals: exact to the
    dtype's precision); "lanczos" runs batched Lanczos on each frequency's
    MᴴM from the kernel's taps (see `_lanczos_top`, `_TapOperator`): σ_max²
    to the residual bound rtol (relative), so σ_max within about rtol/2 of a
    singular value, and in practice far closer (measured 1e-5..1e-8 at rtol
    1e-3..3e-3); "auto": dense when the matrices' smaller side is at most 4
    times the kernel's taps (measured faster there), else Lanczos. A kernel
    of one tap per dim (1x1) is one real matrix at every frequency: its
    svdvals, whatever the method. warm_start: a `NormWarmStart` kept for this
    layer between calls (Lanczos starts where the last call ended).

    Returns a float (the weight's units: output per input, ℓ2 → ℓ2).

    Raises:
      ValueError/TypeError: bad weight shape, sizes, groups, method or rtol.
      torch.linalg.LinAlgError: a non-finite weight (the decomposition failed).
    """
    a = _args(weight, stride, groups, dilation)
    n = _input_size(input_size, a, exact=False)
    g = _norm_grid(n, a, grid)
    _check_method(method, rtol)
    with torch.no_grad():
        return _norm_on_grid(weight, a, g, method, rtol, warm_start)


def _norm_grid(n: tuple[int, ...], a: _Args, grid) -> tuple[int, ...]:
    gr = _per_dim(grid, a.d, "grid")
    return tuple(min(gj, -(-ni // si)) for gj, ni, si in zip(gr, n, a.stride))


def _norm_on_grid(
    weight: torch.Tensor,
    a: _Args,
    g: tuple[int, ...],
    method: str,
    rtol: float,
    warm_start: NormWarmStart | None = None,
) -> float:
    dtype = _compute_dtype(weight)
    w = _fold(_polyphase_kernel(weight.detach().to(dtype), a), g)  # [G, rows, cols, taps...]
    groups, rows, cols = w.shape[:3]
    taps = tuple(w.shape[3:])
    evaluated = tuple(1 if t == 1 else gj for t, gj in zip(taps, g))
    if math.prod(evaluated) == 1:
        # One tap per dim (a 1x1 conv, or a kernel folded to one tap): the operator
        # is the real matrix at every frequency.
        flat = w.reshape(groups, rows, cols)
        return float(_decompose(flat).max())
    if method == "auto":
        small = min(rows, cols) <= _DENSE_NORM_SIDE_PER_TAP * math.prod(taps)
        method = "dense" if small else "lanczos"
    if method == "dense":
        spec, _, _ = _symbol(weight, a, g, dtype)
        return float(_decompose(spec.reshape((-1,) + tuple(spec.shape[-2:]))).max())
    freqs, _ = _half_frequencies(evaluated)
    dft = _dft_matrix(taps, freqs, evaluated, dtype, w.device)
    f = dft.shape[0] // 2
    phases = torch.complex(dft[:f], dft[f:]).T.contiguous()  # [T, F]
    flat = w.reshape(groups, rows, cols, -1)
    key = (tuple(w.shape), g, dtype, w.device)
    starts = warm_start.vectors_for(key) if warm_start is not None else None
    norms, vectors = [], []
    for j in range(groups):
        norm, top = _lanczos_top(
            _TapOperator(flat[j], phases), rtol, start=None if starts is None else starts[j]
        )
        norms.append(norm)
        vectors.append(top)
    if warm_start is not None:
        warm_start.remember(key, vectors)
    return max(norms)


class NormWarmStart:
    """Where the next operator norm of one layer starts: its last top Ritz vectors.

    Pass the same object to `conv_operator_norm` (or `conv_operator_spectrum`)
    each time a layer is measured: after the first (cold) call, Lanczos starts
    from the vectors the last call converged to (`_lanczos_top`), which for
    weights a few hundred optimizer steps apart takes a few steps instead of
    20-30. Vectors are kept per group and frequency ([F, n] complex each, on the
    weight's device: for a 512-channel 3x3 layer at grid 4, 12 × 512 values);
    a change of shape, grid, dtype or device starts cold again.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._vectors: list[torch.Tensor] | None = None

    def vectors_for(self, key: tuple) -> list[torch.Tensor] | None:
        return self._vectors if key == self._key else None

    def remember(self, key: tuple, vectors: list[torch.Tensor]) -> None:
        self._key, self._vectors = key, [v.detach() for v in vectors]


def _check_method(method: str, rtol: float) -> None:
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f'method must be "auto", "dense" or "lanczos", got {method!r}')
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"rtol must be a float in (0, 1), got {rtol!r}")


def operator_frobenius_norm(
    weight: torch.Tensor,
    input_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> float:
    """‖A‖_F of the circular operator at `input_size`, from the kernel alone.

    Each of the ∏N output positions (N = n/s) sees the whole kernel, with taps
    that wrap onto the same input position summed: ‖A‖²_F = ∏N · ‖W_folded‖²_F,
    which is ∏N · ‖W‖²_F when the (dilated) kernel is no longer than n.
    """
    a = _args(weight, stride, groups, dilation)
    n = _input_size(input_size, a, exact=True)
    grid = tuple(ni // si for ni, si in zip(n, a.stride))
    with torch.no_grad():
        w = _fold(_polyphase_kernel(weight.detach().double(), a), grid)
        return math.sqrt(math.prod(grid) * float(w.pow(2).sum()))


def _count(weight: torch.Tensor, a: _Args, grid: tuple[int, ...]) -> int:
    rows = weight.shape[0] // a.groups
    cols = weight.shape[1] * math.prod(a.stride)
    return a.groups * math.prod(grid) * min(rows, cols)


def conv_operator_spectrum(
    weight: torch.Tensor,
    input_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
    top_k: int = 32,
    quantile_levels: Sequence[float] = DEFAULT_QUANTILE_LEVELS,
    full: bool = False,
    grid: int | Sequence[int] = 16,
    method: str = "auto",
    rtol: float = NORM_RTOL,
    warm_start: NormWarmStart | None = None,
) -> OperatorSpectrumResult:
    """A convolution's operator spectrum, ready for a summary.

    full=False (the cheap default): the operator norm on the frequency grid
    (`conv_operator_norm`), the exact Frobenius norm at `input_size`, and the
    stable rank from both; `norm_only` is set (`warm_start` as there). The stride need not divide n
    for the norm; when it does not, the operator at n has no DFT block form,
    so `count` is 0 and the Frobenius norm and stable rank are NaN.
    full=True: every singular value at `input_size` (s must divide n): the
    top_k largest, the quantiles at `quantile_levels`, count, the Frobenius
    norm and the stable rank, all exact for the circular operator.

    Raises:
      ValueError/TypeError: bad arguments (as `conv_singular_values`).
      torch.linalg.LinAlgError: the decomposition failed (a non-finite weight).
    """
    start = time.perf_counter()
    a = _args(weight, stride, groups, dilation)
    n = _input_size(input_size, a, exact=full)
    _check_method(method, rtol)
    if isinstance(top_k, bool) or int(top_k) < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    levels = tuple(float(q) for q in quantile_levels)
    if any(not (0.0 <= q <= 1.0) for q in levels):
        raise ValueError(f"quantile_levels must each be in [0, 1], got {levels}")
    divisible = all(ni % si == 0 for ni, si in zip(n, a.stride))
    exact_grid = tuple(-(-ni // si) for ni, si in zip(n, a.stride))
    with torch.no_grad():
        if divisible:
            w = _fold(_polyphase_kernel(weight.detach().double(), a), exact_grid)
            frobenius = math.sqrt(math.prod(exact_grid) * float(w.pow(2).sum()))
            count = _count(weight, a, exact_grid)
        else:
            frobenius, count = math.nan, 0
        if not full:
            g = _norm_grid(n, a, grid)
            norm = _norm_on_grid(weight, a, g, method, rtol, warm_start)
            return OperatorSpectrumResult(
                input_size=n,
                stride=a.stride,
                operator_norm=norm,
                norm_only=True,
                count=count,
                frobenius_norm=frobenius,
                stable_rank=_stable_rank(frobenius, norm),
                grid_size=g,
                seconds=time.perf_counter() - start,
            )
        values, mult = _half_values(weight, a, exact_grid)
        everything = _expand_sorted(values, mult, None, count).double().cpu()
        norm = float(everything[0])
        top = everything[: int(top_k)].numpy().astype(np.float32)
        quantiles = (
            np.quantile(everything.numpy(), levels).astype(np.float32)
            if levels
            else np.zeros(0, np.float32)
        )
        return OperatorSpectrumResult(
            input_size=n,
            stride=a.stride,
            operator_norm=norm,
            norm_only=False,
            count=int(everything.numel()),
            frobenius_norm=frobenius,
            stable_rank=_stable_rank(frobenius, norm),
            grid_size=exact_grid,
            seconds=time.perf_counter() - start,
            top_values=top,
            quantiles=quantiles,
            quantile_levels=levels,
        )


def _stable_rank(frobenius: float, norm: float) -> float:
    if not math.isfinite(frobenius):
        return math.nan
    return frobenius**2 / norm**2 if norm > 0 else 0.0


def conv_input_size(weight_or_module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The spatial input size of a conv layer from the shape of one input it saw.

    Args:
      weight_or_module: the conv's weight [c_out, c_in/groups, k…] or an
        nn.Conv1d/2d/3d (its weight is used).
      input_shape: the input's shape, batched (N, C, n_1…n_d) or unbatched
        (C, n_1…n_d) — e.g. `tuple(inputs[0].shape)` in a forward pre-hook.

    Returns (n_1…n_d).

    Raises:
      ValueError: the shape has neither d+1 nor d+2 dims for the weight's d.
    """
    weight = getattr(weight_or_module, "weight", weight_or_module)
    d = _spatial_dims(weight)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (d + 1, d + 2):
        raise ValueError(
            f"input shape {shape} does not fit a {_CONV_KINDS[d]} weight of shape "
            f"{tuple(weight.shape)}: expected (N, C, n_1…n_{d}) or (C, n_1…n_{d})"
        )
    return shape[-d:]
