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
  Osborne, Presnell & Turlach 2000; Efron et al. 2004), every A channel's
  path walked at once, one product of the directions with R_bb per event
  and each target's R_AA⁻¹ kept and updated (`lasso_paths`: its cost grows
  with the channels the fits use, one event each; with Li et al.'s ~4
  channels a fit, 0.2-1.9x one `numpy.linalg.lstsq` of the C_b x C_b system
  from 96 to 512 channels, with ~10% of them 3.3-6.2x:
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

import math
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

SMALL_ACTIVE_SET = 12
"""While every path's active set has at most this many channels, its direction is solved
afresh each event (one batched solve costs less than keeping the inverses); past it each
target's R_AA⁻¹ is formed once and then updated."""


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
    """Walk the lasso path of every target at once, stopping each at the rule's grid point.

    Minimises ½βᵀRβ − rᵀβ + α‖β‖₁ (R = gram [C_b, C_b], r a column of targets
    [C_b, T]) for α from α_max = max|r| down. On the path the active set A
    (the non-zero coefficients) has |c_A| = α for the correlations with the
    residual c = r − Rβ, and β_A moves along w = R_AA⁻¹ s_A (s = sign c_A)
    as α falls; a segment ends where an inactive channel's |c_j| reaches α
    (it joins) or an active coefficient reaches 0 (it leaves). Every target
    walks its own path, one event per round (`_Paths`); a round costs one
    product of the targets' directions with R, O(C_b²·T), and either one
    batched solve of the small R_AA systems (while every set has at most
    SMALL_ACTIVE_SET channels) or O(K²) per target for its kept R_AA⁻¹ (K
    active channels); the path of a target that uses k
    channels has about k events. On each segment the error 1 − 2βᵀr + βᵀRβ is
    a quadratic in α, so the grid points on it are checked in closed form.

    want [T]: the explained variance (1 − error) a target's fit must reach.
    Returns (error [T], channels used [T] int64, α [T]).
    """
    gram = np.asarray(gram, np.float64)
    targets = np.asarray(targets, np.float64)
    c_b, t_all = targets.shape
    error = np.ones(t_all)
    channels = np.zeros(t_all, np.int64)
    chosen = np.full(t_all, np.nan)
    alpha_max = np.max(np.abs(targets), axis=0) if c_b else np.zeros(t_all)
    # A target nothing predicts (r = 0) is fitted by β = 0: error 1, no channels.
    chosen[alpha_max <= 0] = 0.0
    ids = np.flatnonzero(alpha_max > 0)  # the targets still walking, by original index
    if not ids.size:
        return error, channels, chosen
    want = np.asarray(want, np.float64)[ids]
    paths = _Paths(gram, targets[:, ids].T, want, ids, (error, channels, chosen))
    for _ in range(8 * c_b + 4 * MAX_PATH_STEPS + 10):
        if paths.finished.all():
            break
        paths.round()
        paths.drop_finished()
    return error, channels, chosen


class _Paths:
    """Every target's lasso path at one point of its walk, target-major ([T, ·]).

    Per target (row): c [T, P], the correlations with the residual (P = C_b + 1:
    a padding column, kept 0); its active list in slots (order [T, cap]: the
    channel, C_b in an unused slot; coef: its coefficient; sign: the sign of
    its c); while `small`, every direction is solved afresh; after it,
    inverse [T, cap, cap]: R_AA⁻¹ over the used slots, the identity
    over the unused ones, updated at each event (bordered when a channel
    joins, a Schur complement when one leaves) and checked every round
    against R_AA·w = s_A; `direct` marks a target whose R_AA is singular
    (exactly collinear channels) or whose inverse drifted: its direction is
    solved afresh every round. Target-major, so reductions run along
    contiguous memory. A finished target stands still until it is dropped.
    """

    TINY = 1e-13

    def __init__(self, gram, r, want, ids, outputs):
        c_b, t = gram.shape[0], r.shape[0]
        self.c_b, self.ids, self.outputs = c_b, ids, outputs
        self.ext = np.zeros((c_b + 1, c_b + 1))  # R, and the identity at the padding
        self.ext[:c_b, :c_b] = gram
        self.ext[c_b, c_b] = 1.0
        self.r = np.hstack([r, np.zeros((t, 1))])
        self.c = self.r.copy()
        self.amax = np.max(np.abs(r), axis=1)
        self.alpha = self.amax.copy()
        self.need = want - 1e-12
        cap = min(8, c_b + 1)
        first = np.argmax(np.abs(r), axis=1)
        self.order = np.full((t, cap), c_b, np.int64)
        self.order[:, 0] = first
        self.coef = np.zeros((t, cap))
        self.sign = np.zeros((t, cap))
        self.sign[:, 0] = np.sign(r[np.arange(t), first])
        self.inverse = np.broadcast_to(np.eye(cap), (t, cap, cap)).copy()  # formed later
        self.counts = np.ones(t, np.int64)
        self.next_k = np.ones(t, np.int64)  # the next grid point to check
        self.last = np.full(t, -1)  # the channel of the last event (not undone at once)
        self.direct = np.zeros(t, bool)
        self.finished = np.zeros(t, bool)
        self.small = True  # directions solved afresh, no inverse kept (SMALL_ACTIVE_SET)

    def round(self) -> None:
        """Every walking target's segment to its next event, its grid points checked."""
        tiny, c_b = self.TINY, self.c_b
        size = int(self.counts.max())
        if size + 1 > self.order.shape[1]:
            self._grow(min(2 * self.order.shape[1], c_b + 1))
        if self.small and size > SMALL_ACTIVE_SET:
            self._keep_inverses(size)
        t = self.c.shape[0]
        rows = np.arange(t)
        slots = self.order[:, :size]  # [T, K]
        used = slots < c_b
        w, a = self._directions(slots)
        c, alpha, live = self.c, self.alpha, ~self.finished
        c_act, a_act = c[rows[:, None], slots], a[rows[:, None], slots]
        beta_act = self.coef[:, :size]
        # Where each inactive channel's |c_j| meets α (joins): α − δ = ±(c_j − δ a_j).
        join = np.full(c.shape, np.inf)
        den = 1.0 - a
        np.divide(alpha[:, None] - c, den, out=join, where=den > tiny)
        other = np.full(c.shape, np.inf)
        den = 1.0 + a
        np.divide(alpha[:, None] + c, den, out=other, where=den > tiny)
        np.minimum(join, other, out=join)
        np.maximum(join, 0.0, out=join)
        join[:, c_b] = np.inf
        join[rows[:, None], slots] = np.inf
        blocked = self.last >= 0
        join[rows[blocked], self.last[blocked]] = np.inf
        # Where an active coefficient reaches 0 (leaves): β_k + δ·w_k = 0.
        leave = np.full((t, size), np.inf)
        np.divide(-beta_act, w, out=leave, where=(w != 0) & used)
        leave[(leave <= tiny * alpha[:, None]) | (slots == self.last[:, None])] = np.inf
        j_join, k_leave = np.argmin(join, axis=1), np.argmin(leave, axis=1)
        d_join, d_leave = join[rows, j_join], leave[rows, k_leave]
        delta = np.minimum(np.minimum(d_join, d_leave), alpha)  # α does not go below 0
        delta[~live] = 0.0
        # The error at α − s on this segment: e0 + s·e1 + s²·e2.
        e0 = 1.0 - np.sum(beta_act * (self.r[rows[:, None], slots] + c_act), axis=1)
        e1 = -2.0 * np.sum(w * c_act, axis=1)
        e2 = np.sum(w * a_act, axis=1)
        self._check_grid(live, delta, beta_act, w, (e0, e1, e2))
        # Move every target to its segment's end and apply its event.
        beta_act += delta[:, None] * w
        c -= a * delta[:, None]
        alpha -= delta
        joins = live & (d_join <= d_leave) & np.isfinite(d_join)
        leaves = live & ~joins & np.isfinite(d_leave)
        event = np.where(joins, j_join, self.order[rows, k_leave])
        if joins.any():
            self._join(rows[joins], j_join[joins], size)
        if leaves.any():
            self._leave(rows[leaves], k_leave[leaves], size)
        self.last = np.where(joins | leaves, event, -1)
        alpha[alpha <= tiny * self.amax] = 0.0

    def _check_grid(self, live, delta, beta_act, w, error_terms) -> None:
        """Finish each target whose rule's grid point lies on this segment [α − δ, α]."""
        tiny, alpha, amax, need = self.TINY, self.alpha, self.amax, self.need
        e0, e1, e2 = error_terms
        # Skip the grid points above where the error reaches its target (in
        # closed form: the smaller root of the quadratic); they cannot satisfy it.
        short = e0 - 1.0 + need  # > 0: the fit still explains too little
        disc = e1 * e1 - 4.0 * e2 * short
        with np.errstate(invalid="ignore", divide="ignore"):
            root = np.where(
                short <= 0,
                0.0,
                np.where((e1 < 0) & (disc >= 0), 2.0 * short / (-e1 + np.sqrt(disc)), np.inf),
            )
            reach = np.maximum(alpha - np.minimum(root, delta), tiny * amax)
            skip = np.ceil(np.log(reach / amax) / math.log(PATH_FACTOR) - 1e-9)
        self.next_k = np.where(live, np.clip(skip, self.next_k, MAX_PATH_STEPS), self.next_k)
        self.next_k = self.next_k.astype(np.int64)
        error, channels, chosen = self.outputs
        pending = live.copy()
        while True:
            grid = amax * PATH_FACTOR ** self.next_k.astype(np.float64)
            pending &= grid >= alpha - delta - tiny * amax
            if not pending.any():
                return
            step = np.clip(alpha - grid, 0.0, delta)
            e = np.clip(e0 + step * (e1 + step * e2), 0.0, 1.0)
            done = pending & ((1.0 - e >= need) | (self.next_k >= MAX_PATH_STEPS))
            if done.any():
                fitted = beta_act[done] + step[done, None] * w[done]
                scale = np.max(np.abs(fitted), axis=1, initial=0.0)
                at = self.ids[done]
                channels[at] = np.count_nonzero(np.abs(fitted) > tiny * scale[:, None], axis=1)
                error[at] = e[done]
                chosen[at] = grid[done]
                self.finished |= done
            self.next_k[pending & ~done] += 1
            pending &= ~done

    def _directions(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w [T, K], a [T, P]): each target's direction R_AA⁻¹s_A and R·w."""
        t, size = slots.shape
        rows = np.arange(t)[:, None]
        sign = self.sign[:, :size]
        if self.small:
            w = self._solve(slots, sign)
            return w, self._times_r(slots, w)
        w = np.matmul(self.inverse[:, :size, :size], sign[:, :, None])[:, :, 0]
        if self.direct.any():
            w[self.direct] = self._solve(slots[self.direct], sign[self.direct])
        a = self._times_r(slots, w)
        # R_AA·w = s_A on the active slots, else the kept inverse drifted: solve afresh.
        drift = np.any(np.abs(a[rows, slots] - sign) > 1e-8, axis=1) & ~self.direct
        if drift.any():
            self.direct |= drift
            w[drift] = self._solve(slots[drift], sign[drift])
            a[drift] = self._times_r(slots[drift], w[drift])
        return w, a

    def _times_r(self, slots: np.ndarray, w: np.ndarray) -> np.ndarray:
        """R·d [n, P] of each direction, w [n, K] on its slots [n, K] (0 at the padding)."""
        d = np.zeros((slots.shape[0], self.c_b + 1))
        d[np.arange(slots.shape[0])[:, None], slots] = w
        return d @ self.ext  # R symmetric: row i is R·d_i

    def _keep_inverses(self, size: int) -> None:
        """Form every target's R_AA⁻¹ over its first `size` slots, to be updated from now on.

        Unused slots hold the identity. A singular R_AA (exactly collinear channels)
        leaves its target on the direct solve.
        """
        sub = _padded_systems(self.ext, self.order[:, :size])
        try:
            self.inverse[:, :size, :size] = np.linalg.inv(sub)
        except np.linalg.LinAlgError:
            for i in range(sub.shape[0]):
                try:
                    self.inverse[i, :size, :size] = np.linalg.inv(sub[i])
                except np.linalg.LinAlgError:
                    self.direct[i] = True
        self.small = False

    def _solve(self, slots: np.ndarray, sign: np.ndarray) -> np.ndarray:
        """R_AA⁻¹s_A [n, K] for the n targets of slots and sign [n, K], solved directly."""
        return _solve_small(_padded_systems(self.ext, slots), sign)

    def _join(self, at: np.ndarray, channel: np.ndarray, size: int) -> None:
        """Channel j joins target `at`'s active list in its first unused slot m.

        The bordered inverse: u = R_AA⁻¹R_Aj and the Schur complement
        σ = R_jj − R_jAu give [[R_AA⁻¹ + uuᵀ/σ, −u/σ], [−uᵀ/σ, 1/σ]]. Unused
        slots contribute 0 to u (the padding row of R is 0), so the update
        over the first size + 1 slots is the same for every target.
        """
        m = self.counts[at]
        self.order[at, m] = channel
        self.sign[at, m] = np.sign(self.c[at, channel])
        self.coef[at, m] = 0.0
        self.counts[at] += 1
        width = size + 1
        kept = at[~self.direct[at]]
        if self.small or not kept.size:
            return
        j, m = channel[~self.direct[at]], m[~self.direct[at]]
        inverse = self.inverse[kept, :width, :width]
        cross = self.ext[self.order[kept, :width], j[:, None]]  # R_Aj; 0 at m and unused slots
        cross[np.arange(kept.size), m] = 0.0
        u = np.matmul(inverse, cross[:, :, None])[:, :, 0]
        schur = self.ext[j, j] - np.sum(cross * u, axis=1)
        singular = schur <= 1e-9 * self.ext[j, j]
        schur = np.where(singular, 1.0, schur)
        inverse += u[:, :, None] * u[:, None, :] / schur[:, None, None]
        rows = np.arange(kept.size)
        inverse[rows, :, m] = -u / schur[:, None]
        inverse[rows, m, :] = -u / schur[:, None]
        inverse[rows, m, m] = 1.0 / schur
        self.inverse[kept, :width, :width] = inverse
        self.direct[kept[singular]] = True

    def _leave(self, at: np.ndarray, k: np.ndarray, size: int) -> None:
        """The channel in slot k leaves target `at`'s list; the last used slot moves into k.

        With the leaving slot swapped to the end, R_AA⁻¹ = [[E, f], [fᵀ, g]]
        gives the remaining block's inverse E − ffᵀ/g.
        """
        tail = self.counts[at] - 1
        for array in (self.order, self.coef, self.sign):
            moved = array[at, tail]
            array[at, tail] = array[at, k]
            array[at, k] = moved
        if not self.small:
            self._remove_from_inverses(at, k, tail, size)
        self.order[at, tail], self.coef[at, tail], self.sign[at, tail] = self.c_b, 0.0, 0.0
        self.counts[at] -= 1

    def _remove_from_inverses(self, at, k, tail, size) -> None:
        """Slot k leaves the kept inverses of targets `at`, its last used slot `tail` moving in."""
        rows = np.arange(at.size)
        inverse = self.inverse[at, :size, :size]
        for axis in (1, 2):  # swap slots k and tail in rows, then in columns
            index = [rows, slice(None), slice(None)]
            index_k, index_tail = list(index), list(index)
            index_k[axis], index_tail[axis] = k, tail
            moved = inverse[tuple(index_tail)].copy()
            inverse[tuple(index_tail)] = inverse[tuple(index_k)]
            inverse[tuple(index_k)] = moved
        f = inverse[rows, :, tail]  # [n, K]
        g = f[rows, tail]
        inverse -= f[:, :, None] * f[:, None, :] / np.where(g == 0, 1.0, g)[:, None, None]
        inverse[rows, tail, :] = 0.0
        inverse[rows, :, tail] = 0.0
        inverse[rows, tail, tail] = 1.0
        keep = ~self.direct[at]
        self.inverse[at[keep], :size, :size] = inverse[keep]

    def _grow(self, cap: int) -> None:
        """Room for cap slots per target (unused slots: padding, identity inverse)."""
        t, old = self.order.shape
        order = np.full((t, cap), self.c_b, np.int64)
        order[:, :old] = self.order
        coef, sign = np.zeros((t, cap)), np.zeros((t, cap))
        coef[:, :old], sign[:, :old] = self.coef, self.sign
        inverse = np.broadcast_to(np.eye(cap), (t, cap, cap)).copy()
        inverse[:, :old, :old] = self.inverse
        self.order, self.coef, self.sign, self.inverse = order, coef, sign, inverse

    def drop_finished(self) -> None:
        """Drop the finished targets once they are an eighth of the rows or all of them."""
        if not self.finished.any():
            return
        count = int(self.finished.sum())
        if 8 * count < self.finished.size and count < self.finished.size:
            return
        keep = ~self.finished
        for name in (
            "ids", "r", "c", "amax", "alpha", "need", "order", "coef", "sign", "inverse",
            "counts", "next_k", "last", "direct", "finished",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name)[keep])


def _padded_systems(ext: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """R_AA [n, K, K] of slot lists [n, K] (C_b marks an unused slot: the identity there)."""
    c_b = ext.shape[0] - 1
    size = slots.shape[1]
    sub = ext.ravel().take(slots[:, :, None] * (c_b + 1) + slots[:, None, :])
    if size > 1:  # two unused slots meet at ext[c_b, c_b] = 1 off the diagonal too
        pad = slots == c_b
        both = pad[:, :, None] & pad[:, None, :]
        both[:, np.arange(size), np.arange(size)] = False
        sub[both] = 0.0
    return sub


def _solve_small(matrices: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve each [K, K] system of a stack [T, K, K] for its [K] right side.

    A (numerically) singular system, which exactly collinear channels can
    give, falls back to its least-squares (minimum-norm) solution.
    """
    try:
        return np.linalg.solve(matrices, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(rhs)
        for i in range(matrices.shape[0]):
            out[i] = np.linalg.lstsq(matrices[i], rhs[i], rcond=None)[0]
        return out


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
