"""The exact lasso path of many targets on one Gram matrix, each walked to a grid point.

Minimises ½βᵀRβ − rᵀβ + α‖β‖₁ (R a C × C Gram matrix with a positive diagonal,
r one target's correlations) for α from α_max = max|r| down, by the homotopy of
Osborne, Presnell & Turlach (2000), the LARS-lasso of Efron et al. (2004). On
the path the active set A (the non-zero coefficients) has |c_A| = α for the
correlations with the residual c = r − Rβ, and β_A moves along
w = R_AA⁻¹s_A (s = sign c_A) as α falls; a segment ends where an inactive
channel's |c_j| reaches α (it joins) or an active coefficient reaches 0 (it
leaves). On each segment the error 1 − 2βᵀr + βᵀRβ is a quadratic in α, so
the grid points α_max·factor^k on it are checked in closed form: a target stops
at the first grid point whose fit explains (1 − error) at least its `want`.

Compiled (numba), one target after another: an event costs O(K·C) for the
direction's product with R (K active channels: one row of R per active
channel, contiguous) and O(K²) for R_AA⁻¹, kept and updated (bordered when a
channel joins, a Schur complement when one leaves) and checked every event
against R_AA·w = s_A; where that check fails (drift) or R_AA is singular
(exactly collinear channels) the target's directions are solved afresh from
then on (the minimum-norm solution, eigenvalues at or below K·eps·λ_max left
out). A path that uses k channels has about k events, so a target costs about
C·k²/2 multiply-adds: why NumPy, which would pay a C × C product per event for
every target at once, is not used here.

The first call in a fresh install compiles the walk (a few seconds, then cached
on disk next to this file, or in numba's user cache where that is read-only).
"""

from __future__ import annotations

import numba
import numpy as np

TINY = 1e-13
"""Relative size below which a step, a denominator or a coefficient counts as 0."""

DRIFT_TOLERANCE = 1e-8
"""A kept R_AA⁻¹ whose direction misses R_AA·w = s_A by more than this is abandoned."""

SINGULAR_SCHUR = 1e-9
"""A joining channel whose Schur complement is at most this × R_jj makes R_AA singular."""


def _compiled(function):
    """numba's nopython compile of `function`, cached on disk where numba finds a writable
    place (next to this file, else its user cache); compiled anew in each process where
    it finds none (numba refuses to cache there: RuntimeError)."""
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:
        return numba.njit(function)


EVENTS, LEAVES, DRIFTED, SINGULAR = range(4)
"""The counters `walk` returns: events walked, of them channels that left, targets whose
kept inverse drifted, targets whose R_AA became singular."""


def walk(
    gram: np.ndarray,
    targets: np.ndarray,
    want: np.ndarray,
    *,
    factor: float,
    max_steps: int,
    round_limit: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each target's lasso path down to its grid point; see the module docstring.

    Args:
      gram: R [C, C], symmetric, positive diagonal.
      targets: [T, C], one target's correlations r per row.
      want: [T], the explained variance a fit must reach.
      factor: the grid's ratio (α_k = α_max·factor^k, k = 1, 2, …).
      max_steps: the last grid point k; where no earlier point reaches `want`, its fit stands.
      round_limit: events per target at most (a target past it is left unfitted).

    Returns:
      (error [T], channels [T] int64, α [T], counters [4] int64 indexed by EVENTS,
      LEAVES, DRIFTED, SINGULAR). A target with r = 0 gets error 1, 0 channels, α 0;
      one past `round_limit` error 1, 0 channels, α NaN.
    """
    return _walk(
        np.ascontiguousarray(gram, dtype=np.float64),
        np.ascontiguousarray(targets, dtype=np.float64),
        np.ascontiguousarray(want, dtype=np.float64),
        float(factor),
        int(max_steps),
        int(round_limit),
    )


@_compiled
def _direct(gram, order, sign, k, w):
    """w[:k] = R_AA⁺s_A, the minimum-norm solution (eigenvalues ≤ k·eps·λ_max left out)."""
    sub = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            sub[i, j] = gram[order[i], order[j]]
    values, vectors = np.linalg.eigh(sub)
    floor = max(values[k - 1], 0.0) * k * np.finfo(np.float64).eps
    for i in range(k):
        w[i] = 0.0
    for m in range(k):
        if values[m] > floor:
            proj = 0.0
            for i in range(k):
                proj += vectors[i, m] * sign[i]
            proj /= values[m]
            for i in range(k):
                w[i] += vectors[i, m] * proj


@_compiled
def _times_r(gram, order, w, k, a):
    """a = R·w for w on the active channels order[:k] (R symmetric: a sum of its rows)."""
    a[:] = 0.0
    for i in range(k):
        row = gram[order[i]]
        wi = w[i]
        for j in range(a.shape[0]):
            a[j] += wi * row[j]


@_compiled
def _border(inv, gram, order, k, j, u):
    """Grow R_AA⁻¹ [k, k] by channel j into slot k; False where R_AA becomes singular.

    u = R_AA⁻¹R_Aj and σ = R_jj − R_jAu give [[R_AA⁻¹ + uuᵀ/σ, −u/σ], [−uᵀ/σ, 1/σ]].
    """
    schur = gram[j, j]
    for i in range(k):
        s = 0.0
        for q in range(k):
            s += inv[i, q] * gram[order[q], j]
        u[i] = s
    for i in range(k):
        schur -= gram[order[i], j] * u[i]
    if schur <= SINGULAR_SCHUR * gram[j, j]:
        return False
    for i in range(k):
        for q in range(k):
            inv[i, q] += u[i] * u[q] / schur
        inv[i, k] = -u[i] / schur
        inv[k, i] = -u[i] / schur
    inv[k, k] = 1.0 / schur
    return True


@_compiled
def _drop(inv, k, i):
    """R_AA⁻¹ [k, k] without slot i, the last slot moved into it.

    Slots i and tail = k − 1 swapped in rows and columns, [[E, f], [fᵀ, g]] → E − ffᵀ/g.
    """
    tail = k - 1
    for q in range(k):
        inv[i, q], inv[tail, q] = inv[tail, q], inv[i, q]
    for q in range(k):
        inv[q, i], inv[q, tail] = inv[q, tail], inv[q, i]
    g = inv[tail, tail]
    if g == 0.0:
        g = 1.0
    for q in range(tail):
        f = inv[q, tail] / g
        for m in range(tail):
            inv[q, m] -= f * inv[m, tail]


@_compiled
def _walk(gram, targets, want, factor, max_steps, round_limit):
    """`walk` on checked arrays: the targets one after another, the work arrays shared."""
    t_all, p = targets.shape
    error = np.ones(t_all)
    channels = np.zeros(t_all, np.int64)
    chosen = np.full(t_all, np.nan)
    counters = np.zeros(4, np.int64)
    inv = np.zeros((p, p))
    order = np.zeros(p, np.int64)
    sign, coef, w, a, u, c = (
        np.zeros(p),
        np.zeros(p),
        np.zeros(p),
        np.zeros(p),
        np.zeros(p),
        np.zeros(p),
    )
    slot = np.full(p, -1)  # a channel's slot in the active list, -1 when inactive
    for t in range(t_all):
        r = targets[t]
        amax, first = 0.0, 0
        for j in range(p):
            if abs(r[j]) > amax:
                amax, first = abs(r[j]), j
        if not amax > 0.0:  # nothing predicts it: β = 0
            chosen[t] = 0.0
            continue
        need = want[t] - 1e-12
        c[:] = r
        slot[:] = -1
        alpha = amax
        order[0], slot[first], coef[0] = first, 0, 0.0
        sign[0] = np.sign(r[first])
        inv[0, 0] = 1.0 / gram[first, first]
        k, next_k, last, direct = 1, 1, -1, False
        for _ in range(round_limit):
            if direct:
                _direct(gram, order, sign, k, w)
            else:
                for i in range(k):
                    s = 0.0
                    for q in range(k):
                        s += inv[i, q] * sign[q]
                    w[i] = s
            _times_r(gram, order, w, k, a)
            if not direct:
                drift = 0.0
                for i in range(k):
                    drift = max(drift, abs(a[order[i]] - sign[i]))
                if drift > DRIFT_TOLERANCE:
                    direct = True
                    counters[DRIFTED] += 1
                    _direct(gram, order, sign, k, w)
                    _times_r(gram, order, w, k, a)
            # Where each inactive channel's |c_j| meets α (joins): α − δ = ±(c_j − δ·a_j).
            d_join, j_join = np.inf, -1
            for j in range(p):
                if slot[j] >= 0 or j == last:
                    continue
                best = np.inf
                if 1.0 - a[j] > TINY:
                    best = (alpha - c[j]) / (1.0 - a[j])
                if 1.0 + a[j] > TINY:
                    best = min(best, (alpha + c[j]) / (1.0 + a[j]))
                best = max(best, 0.0)
                if best < d_join:
                    d_join, j_join = best, j
            # Where an active coefficient reaches 0 (leaves): β_i + δ·w_i = 0.
            d_leave, i_leave = np.inf, -1
            for i in range(k):
                if w[i] != 0.0 and order[i] != last:
                    v = -coef[i] / w[i]
                    if TINY * alpha < v < d_leave:
                        d_leave, i_leave = v, i
            delta = min(d_join, d_leave, alpha)  # α does not go below 0
            # The error at α − s on this segment: e0 + s·e1 + s²·e2.
            e0, e1, e2 = 1.0, 0.0, 0.0
            for i in range(k):
                o = order[i]
                e0 -= coef[i] * (r[o] + c[o])
                e1 -= 2.0 * w[i] * c[o]
                e2 += w[i] * a[o]
            done = False
            while True:
                grid = amax * factor**next_k
                if grid < alpha - delta - TINY * amax:
                    break  # below this segment
                step = min(max(alpha - grid, 0.0), delta)
                e = min(max(e0 + step * (e1 + step * e2), 0.0), 1.0)
                if 1.0 - e >= need or next_k >= max_steps:
                    scale = 0.0
                    for i in range(k):
                        scale = max(scale, abs(coef[i] + step * w[i]))
                    used = 0
                    for i in range(k):
                        if abs(coef[i] + step * w[i]) > TINY * scale:
                            used += 1
                    error[t], channels[t], chosen[t] = e, used, grid
                    done = True
                    break
                next_k += 1
            if done:
                break
            for i in range(k):
                coef[i] += delta * w[i]
            for j in range(p):
                c[j] -= delta * a[j]
            alpha -= delta
            counters[EVENTS] += 1
            if d_join <= d_leave and d_join < np.inf:
                j = j_join
                order[k], slot[j], coef[k] = j, k, 0.0
                sign[k] = np.sign(c[j])
                if not direct and not _border(inv, gram, order, k, j, u):
                    direct = True
                    counters[SINGULAR] += 1
                k += 1
                last = j
            elif d_leave < np.inf:
                counters[LEAVES] += 1
                i, tail = i_leave, k - 1
                gone = order[i]
                order[i], order[tail] = order[tail], order[i]
                coef[i], coef[tail] = coef[tail], coef[i]
                sign[i], sign[tail] = sign[tail], sign[i]
                slot[order[i]], slot[gone] = i, -1
                if not direct:
                    _drop(inv, k, i)
                k -= 1
                last = gone
            else:
                last = -1
            if alpha <= TINY * amax:
                alpha = 0.0
    return error, channels, chosen, counters
