"""Each channel of network A predicted from all channels of network B (Li et al. 2016, §4).

Li, Yosinski, Clune, Lipson & Hopcroft, *Convergent Learning: Do different
neural networks learn the same representations?* (ICLR 2016), predict each
channel of one network's layer from the channels of another network's layer,
by least squares and with an L1 penalty (a sparse prediction), on normalised
channels: the squared error is then a fraction of the channel's variance, 1.0
meaning no (linear) relation and 0.0 an exact linear copy. Their table: 0.170
with all 96 channels of AlexNet's conv1, 0.235 with 4.7 channels on average.

Everything here works on correlation matrices, which the correlation
accumulator (`analysis.correlation.CorrelationAccumulator`, cross mode)
already holds for two streams: R_bb, B's channels among themselves, and
R_ab, each A channel against each B channel. For a standardised A channel y
and standardised B channels X (population variances 1, over the same
samples), with coefficients β:

  mean squared error  (1/n)‖y − Xβ‖² = 1 − 2βᵀr + βᵀR_bbβ,   r = R_ab[i, :]

- Least squares: β = R_bb⁺r (through a Cholesky factor when R_bb is well
  conditioned; else the pseudo-inverse, eigenvalues below C_b·eps·λ_max
  counted as 0: collinear channels share the weight), error
  1 − rᵀR_bb⁺r, the unexplained fraction of the variance (1 − R²), the same
  as `numpy.linalg.lstsq` on the raw activations with an intercept.
- L1: minimise ½(1 − 2βᵀr + βᵀR_bbβ) + α‖β‖₁, the objective of
  `sklearn.linear_model.Lasso(alpha=α)` on the standardised activations,
  from the exact lasso path on the Gram matrix (the homotopy / LARS-lasso:
  Osborne, Presnell & Turlach 2000; Efron et al. 2004), each A channel's
  path walked in compiled code (`lasso_paths`, `analysis.lasso_path`: about
  C_b·k²/2 multiply-adds for a fit that uses k channels; with Li et al.'s ~4
  channels a fit, 0.08-0.7x one `numpy.linalg.lstsq` of the C_b x C_b system
  from 96 to 1024 channels, with ~10% of them 0.8-1.3x:
  benchmarks/bench_channel_regression.py).
  `lasso_on_gram` (coordinate descent) solves one α directly, as a
  reference. α is chosen
  per channel by one rule: the largest α of the path α_max·0.85^k (α_max =
  max|r|, where β = 0) whose fit explains at least `keep` (0.9) of what the
  least-squares fit explains, 1 − error ≥ keep·(1 − error_ls): the sparsest
  prediction that keeps nine tenths of the relation. Reported: its error and
  how many B channels it uses.

Channels that cannot take part are left out: a dead or overflowed A channel
has no error (NaN); a dead B channel is not a predictor. Correlations are
the accumulator's, so the samples are its sample positions (every input and
spatial position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_KEEP = 0.9
"""The L1 fit keeps at least this fraction of the least-squares explained variance."""

PATH_FACTOR = 0.85
"""α shrinks by this factor per step of the L1 path (α_max·0.85^k)."""

MAX_PATH_STEPS = 120
"""Path steps at most (α_max·0.85^120 ≈ 3e-9·α_max: past any useful fit)."""

TOLERANCE = 1e-7
"""Coordinate descent stops when no coefficient moves by more than this."""

MAX_SWEEPS = 500
"""Coordinate-descent sweeps per α at most."""


@dataclass(frozen=True)
class ChannelRegression:
    """How well each channel of A is predicted from B's channels; arrays [C_a].

    least_squares_error: 1 − R², the unexplained fraction of the channel's
      variance with all usable B channels (NaN for an A channel that cannot
      be predicted: dead, overflowed, or no usable B channel).
    l1_error: the same for the L1 fit at its chosen `l1_alpha`.
    l1_channels: how many B channels the L1 fit uses (non-zero coefficients).
    l1_alpha: the α chosen per channel (NaN where not fitted).
    mean_*: the means over the A channels that were predicted (NaN when none).
    """

    least_squares_error: np.ndarray
    l1_error: np.ndarray
    l1_channels: np.ndarray
    l1_alpha: np.ndarray
    mean_least_squares_error: float
    mean_l1_error: float
    mean_l1_channels: float


def channel_regression(
    cross: np.ndarray,
    within_b: np.ndarray,
    usable_a: np.ndarray | None = None,
    usable_b: np.ndarray | None = None,
    *,
    keep: float = DEFAULT_KEEP,
) -> ChannelRegression:
    """Predict each A channel from all B channels: least squares and L1.

    Args:
      cross: R_ab [C_a, C_b], Pearson correlations of A's channels with B's
        (`ChannelCorrelation.matrix` of a cross accumulator).
      within_b: R_bb [C_b, C_b] (`ChannelCorrelation.within_cols`).
      usable_a, usable_b: bool masks of the channels that take part (default:
        those with a non-zero diagonal of their within-layer matrix, i.e. not
        dead; pass `~(stats.dead | stats.overflow)`).
      keep: the L1 fit's share of the least-squares explained variance, in (0, 1].

    Returns:
      `ChannelRegression`.

    Raises:
      ValueError: shapes that do not match, or keep outside (0, 1].
    """
    cross = np.asarray(cross, dtype=np.float64)
    within_b = np.asarray(within_b, dtype=np.float64)
    if cross.ndim != 2 or within_b.shape != (cross.shape[1], cross.shape[1]):
        raise ValueError(
            f"cross must be [C_a, C_b] and within_b [C_b, C_b], got {cross.shape} and "
            f"{within_b.shape}"
        )
    if not (0.0 < float(keep) <= 1.0):
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    c_a, c_b = cross.shape
    if usable_b is None:
        usable_b = np.diagonal(within_b) > 0
    usable_b = np.asarray(usable_b, dtype=bool)
    if usable_a is None:
        usable_a = np.ones(c_a, dtype=bool)
    usable_a = np.asarray(usable_a, dtype=bool) & np.isfinite(cross).all(axis=1)
    nan = np.full(c_a, np.nan)
    if not usable_b.any() or not usable_a.any():
        return _result(nan, nan.copy(), np.zeros(c_a, np.int64), nan.copy())
    gram = within_b[np.ix_(usable_b, usable_b)]
    targets = cross[np.ix_(usable_a, usable_b)].T  # [C_b', C_a']: one column per A channel
    ls_error = least_squares_errors(gram, targets)
    l1_error, l1_channels, l1_alpha = l1_fits(gram, targets, ls_error, keep)
    out_ls, out_l1, out_alpha = nan.copy(), nan.copy(), nan.copy()
    out_channels = np.zeros(c_a, np.int64)
    out_ls[usable_a], out_l1[usable_a], out_alpha[usable_a] = ls_error, l1_error, l1_alpha
    out_channels[usable_a] = l1_channels
    return _result(out_ls, out_l1, out_channels, out_alpha)


def least_squares_errors(gram: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1 − rᵀR⁺r per column r of targets [C_b, T], clipped to [0, 1]; R = gram [C_b, C_b].

    A well-conditioned R (every Cholesky pivot above 1000·C_b·eps of the largest
    diagonal entry) is solved through its Cholesky factor L: rᵀR⁻¹r = ‖L⁻¹r‖².
    Otherwise (collinear channels) one symmetric eigendecomposition serves every
    target, eigenvalues at or below C_b·eps·λ_max (numerically zero) left out:
    the pseudo-inverse, collinear channels sharing the weight.
    """
    c_b = gram.shape[0]
    eps = np.finfo(np.float64).eps
    if c_b:
        try:
            factor = np.linalg.cholesky(gram)
        except np.linalg.LinAlgError:
            factor = None
        if factor is not None:
            pivots = np.diagonal(factor) ** 2
            if pivots.min() > 1e3 * c_b * eps * float(np.max(np.diagonal(gram))):
                whitened = np.linalg.solve(factor, targets)
                explained = np.sum(whitened**2, axis=0)
                if np.all(explained <= 1.0 + 1e-9):  # else rounding: take the careful way
                    return np.clip(1.0 - explained, 0.0, 1.0)
    values, vectors = np.linalg.eigh(gram)
    top = float(values[-1]) if values.size else 0.0
    keep = values > max(top, 0.0) * c_b * eps
    projected = vectors[:, keep].T @ targets  # [k, T]
    explained = np.sum(projected**2 / values[keep, None], axis=0)
    return np.clip(1.0 - explained, 0.0, 1.0)


def lasso_on_gram(
    gram: np.ndarray,
    targets: np.ndarray,
    alpha: np.ndarray,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """β [C_b, T] minimising ½βᵀRβ − rᵀβ + α‖β‖₁ per column r of targets, α [T].

    Cyclic coordinate descent on the Gram matrix R (every diagonal entry
    positive), all columns at once: a full sweep, then sweeps over the
    coefficients that are non-zero until none moves by more than TOLERANCE,
    then a full sweep again to confirm (the active-set strategy of glmnet);
    at most MAX_SWEEPS sweeps. `start`: warm start (the previous α of a path).
    """
    c_b, t = targets.shape
    beta = np.zeros((c_b, t)) if start is None else start.copy()
    product = gram @ beta  # Rβ, kept up to date
    diagonal = np.diagonal(gram)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(1, t)
    full = True
    for _ in range(MAX_SWEEPS):
        rows = range(c_b) if full else np.flatnonzero(np.any(beta != 0, axis=1))
        largest = 0.0
        for j in rows:
            old = beta[j]
            z = targets[j] - product[j] + diagonal[j] * old
            new = np.sign(z) * np.maximum(np.abs(z) - alpha[0], 0.0) / diagonal[j]
            delta = new - old
            if np.any(delta):
                product += np.outer(gram[:, j], delta)
                beta[j] = new
                largest = max(largest, float(np.max(np.abs(delta))))
        if largest <= TOLERANCE:
            if full:
                break
            full = True
        else:
            full = False
    return beta


def l1_fits(
    gram: np.ndarray, targets: np.ndarray, least_squares: np.ndarray, keep: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The L1 fit of each target at the α the module's rule chooses.

    The rule: the first (largest) α of the grid α_max·PATH_FACTOR^k, k = 1,
    2, …, MAX_PATH_STEPS (α_max = max|r| per target) whose fit explains at
    least keep·(1 − least_squares); past the grid's end the last grid point's
    fit stands. The fits come from the exact lasso path (`lasso_paths`, the
    homotopy of Osborne et al. 2000 / LARS-lasso of Efron et al. 2004), which
    is piecewise linear in α: each grid point's fit is read off its segment,
    so no grid point costs an iterative solve.
    Returns (error [T], channels used [T] int64, α [T]).
    """
    return lasso_paths(gram, targets, keep * (1.0 - np.asarray(least_squares, np.float64)))


def lasso_paths(
    gram: np.ndarray, targets: np.ndarray, want: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the lasso path of every target, stopping each at the rule's grid point.

    Minimises ½βᵀRβ − rᵀβ + α‖β‖₁ (R = gram [C_b, C_b], r a column of targets
    [C_b, T]) for α from α_max = max|r| down, by the exact homotopy
    (`analysis.lasso_path.walk`, compiled): a target whose fit uses k channels
    costs about C_b·k²/2 multiply-adds. want [T]: the explained variance
    (1 − error) a target's fit must reach.
    Returns (error [T], channels used [T] int64, α [T]).
    """
    from deepscope.analysis import lasso_path  # numba: imported (and compiled) on first use

    targets = np.asarray(targets)  # walk() makes the float64 copies it needs
    c_b = targets.shape[0]
    error, channels, chosen, _ = lasso_path.walk(
        gram,
        targets.T,
        want,
        factor=PATH_FACTOR,
        max_steps=MAX_PATH_STEPS,
        round_limit=8 * c_b + 4 * MAX_PATH_STEPS + 10,
    )
    return error, channels, chosen


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _result(ls, l1, channels, alpha) -> ChannelRegression:
    predicted = np.isfinite(ls)
    return ChannelRegression(
        least_squares_error=ls,
        l1_error=l1,
        l1_channels=channels,
        l1_alpha=alpha,
        mean_least_squares_error=_mean(ls),
        mean_l1_error=_mean(l1),
        mean_l1_channels=float(channels[predicted].mean()) if predicted.any() else float("nan"),
    )
