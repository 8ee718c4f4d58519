"""deepscope.analysis.channel_regression: one network's channels predicted from another's.

References: `numpy.linalg.lstsq` on the raw activations (with an intercept) for the least
squares error, `sklearn.linear_model.Lasso` on the standardised activations at the chosen
α for the L1 fit, and closed forms (a channel that copies a B channel, one unrelated to B).
The correlations come from the real `CorrelationAccumulator` in cross mode.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepscope.analysis import channel_regression as cr
from deepscope.analysis import lasso_path
from deepscope.analysis.correlation import CorrelationAccumulator

pytest.importorskip("sklearn")
from sklearn.linear_model import Lasso  # noqa: E402


def _activations(seed: int = 0, n: int = 3000):
    """A (12 channels) made of a few B channels (20) plus noise, B with a dead channel."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, 20))
    b[:, 7] = 0.25  # dead: constant
    b[:, 9] = b[:, 3] + b[:, 4]  # collinear with two others
    mix = np.zeros((20, 12))
    for i in range(12):
        used = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 10, 11], size=1 + i % 4, replace=False)
        mix[used, i] = rng.uniform(0.5, 2.0, size=used.size) * rng.choice([-1, 1], used.size)
    noise = rng.standard_normal((n, 12)) * np.linspace(0.05, 2.0, 12)
    a = b @ mix + noise + 3.0
    a[:, 5] = b[:, 2] * -4.0 + 1.0  # an exact linear copy of a B channel
    a[:, 11] = rng.standard_normal(n)  # unrelated to B
    return a, b


def _correlations(a: np.ndarray, b: np.ndarray):
    acc = CorrelationAccumulator(channel_dim=1, other_channel_dim=1)
    for chunk in np.array_split(np.arange(a.shape[0]), 3):
        acc.update(torch.from_numpy(a[chunk]), torch.from_numpy(b[chunk]))
    return acc.compute()


def _standardised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / x.std(0)


def test_least_squares_error_is_numpy_lstsq_on_the_activations():
    a, b = _activations()
    corr = _correlations(a, b)
    usable_b = ~(corr.cols.dead | corr.cols.overflow)
    assert not usable_b[7] and usable_b.sum() == 19
    got = cr.channel_regression(corr.matrix, corr.within_cols, usable_b=usable_b)
    x = np.column_stack([b[:, usable_b], np.ones(len(b))])
    for i in range(a.shape[1]):
        y = a[:, i]
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        want = np.sum((y - x @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
        assert got.least_squares_error[i] == pytest.approx(want, abs=1e-9)
    assert got.least_squares_error[5] == pytest.approx(0.0, abs=1e-9)  # a copy
    assert got.least_squares_error[11] > 0.98  # unrelated: close to 1 (19 of 3000 samples' fit)
    assert got.mean_least_squares_error == pytest.approx(np.mean(got.least_squares_error))


def test_l1_fit_is_sklearn_lasso_at_the_chosen_alpha():
    a, b = _activations(seed=1)
    corr = _correlations(a, b)
    usable_b = ~(corr.cols.dead | corr.cols.overflow)
    got = cr.channel_regression(corr.matrix, corr.within_cols, usable_b=usable_b)
    x = _standardised(b[:, usable_b])
    for i in range(a.shape[1]):
        y = _standardised(a[:, i])
        model = Lasso(alpha=got.l1_alpha[i], fit_intercept=True, tol=1e-12, max_iter=100000)
        model.fit(x, y)
        want = np.mean((y - model.predict(x)) ** 2)
        assert got.l1_error[i] == pytest.approx(want, abs=1e-6), i
        assert got.l1_channels[i] == np.count_nonzero(np.abs(model.coef_) > 1e-9), i


def test_the_alpha_rule_keeps_nine_tenths_of_the_explained_variance():
    a, b = _activations(seed=2)
    corr = _correlations(a, b)
    got = cr.channel_regression(corr.matrix, corr.within_cols)
    explained_ls = 1 - got.least_squares_error
    explained_l1 = 1 - got.l1_error
    assert np.all(explained_l1 >= cr.DEFAULT_KEEP * explained_ls - 1e-9)
    # The largest such α on the path: one step larger keeps less.
    usable_b = np.diagonal(corr.within_cols) > 0
    gram = corr.within_cols[np.ix_(usable_b, usable_b)]
    for i in range(a.shape[1]):
        r = corr.matrix[i, usable_b]
        larger = got.l1_alpha[i] / cr.PATH_FACTOR
        if larger >= np.max(np.abs(r)) - 1e-15:
            continue  # the first step of the path: β = 0 above it
        beta = cr.lasso_on_gram(gram, r[:, None], np.array([larger]))[:, 0]
        err = 1 - 2 * beta @ r + beta @ gram @ beta
        assert 1 - err < cr.DEFAULT_KEEP * explained_ls[i] + 1e-9, i
    # Sparse: the L1 fits use fewer channels than there are.
    assert got.mean_l1_channels < usable_b.sum()


def test_dead_a_channels_and_bad_shapes():
    a, b = _activations(seed=3)
    corr = _correlations(a, b)
    usable_a = np.ones(a.shape[1], bool)
    usable_a[4] = False
    got = cr.channel_regression(corr.matrix, corr.within_cols, usable_a=usable_a)
    assert np.isnan(got.least_squares_error[4]) and np.isnan(got.l1_error[4])
    assert got.l1_channels[4] == 0
    assert np.isfinite(np.delete(got.least_squares_error, 4)).all()
    with pytest.raises(ValueError, match="C_a, C_b"):
        cr.channel_regression(corr.matrix, corr.within_cols[:3, :3])
    with pytest.raises(ValueError, match="keep"):
        cr.channel_regression(corr.matrix, corr.within_cols, keep=0.0)
    none = cr.channel_regression(corr.matrix, corr.within_cols, usable_b=np.zeros(20, bool))
    assert np.isnan(none.least_squares_error).all() and np.isnan(none.mean_l1_error)


def _wide_dense(seed: int = 4, n: int = 4000, c_b: int = 48, c_a: int = 24):
    """A layer whose channels each mix 6-12 of B's 48 correlated channels: long lasso paths."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    b = latent @ rng.standard_normal((6, c_b)) * 0.7 + rng.standard_normal((n, c_b))
    mix = np.zeros((c_b, c_a))
    for i in range(c_a):
        used = rng.choice(c_b, size=6 + i % 7, replace=False)
        mix[used, i] = rng.uniform(0.3, 1.5, size=used.size) * rng.choice([-1, 1], used.size)
    a = b @ mix + rng.standard_normal((n, c_a)) * 0.8
    return a, b


def _assert_l1_fits_are_sklearn_lasso(got, a: np.ndarray, b: np.ndarray) -> None:
    x = _standardised(b)
    for i in range(a.shape[1]):
        y = _standardised(a[:, i])
        model = Lasso(alpha=got.l1_alpha[i], fit_intercept=True, tol=1e-12, max_iter=100000)
        model.fit(x, y)
        assert got.l1_error[i] == pytest.approx(np.mean((y - model.predict(x)) ** 2), abs=1e-6), i
        assert got.l1_channels[i] == np.count_nonzero(np.abs(model.coef_) > 1e-9), i


def _walk_counters(corr) -> np.ndarray:
    """The lasso walk's counters (events, leaves, drifted, singular) on these correlations."""
    usable_b = np.diagonal(corr.within_cols) > 0
    gram = corr.within_cols[np.ix_(usable_b, usable_b)]
    targets = corr.matrix[:, usable_b]
    want = cr.DEFAULT_KEEP * (1 - cr.least_squares_errors(gram, targets.T))
    return lasso_path.walk(
        gram, targets, want, factor=cr.PATH_FACTOR, max_steps=cr.MAX_PATH_STEPS, round_limit=999
    )[3]


def test_long_paths_with_channels_leaving_are_sklearn_lasso():
    """Fits of 6-12 channels among 48 correlated ones: channels join and leave the paths,
    every R_AA⁻¹ bordered and shrunk in place (none drifts onto the direct solve)."""
    a, b = _wide_dense()
    corr = _correlations(a, b)
    counters = _walk_counters(corr)
    assert counters[lasso_path.LEAVES] > 0  # the Schur-complement downdate is on the paths
    assert counters[lasso_path.DRIFTED] == 0 and counters[lasso_path.SINGULAR] == 0
    got = cr.channel_regression(corr.matrix, corr.within_cols)
    assert got.mean_l1_channels > 6
    _assert_l1_fits_are_sklearn_lasso(got, a, b)


def _interpreted_walk(monkeypatch) -> None:
    """Run the walk's loop as Python (its helpers stay compiled), so that a test can
    change what it calls and the constants it reads."""
    monkeypatch.setattr(lasso_path, "_walk", lasso_path._walk.py_func)


def test_a_kept_inverse_that_drifts_is_solved_afresh(monkeypatch):
    """Corrupt every target's kept R_AA⁻¹ at its third channel: the fits stay exact."""
    a, b = _wide_dense(seed=5)
    corr = _correlations(a, b)
    _interpreted_walk(monkeypatch)
    border = lasso_path._border
    corrupted = []

    def corrupting_border(inv, gram, order, k, j, u):
        grown = border(inv, gram, order, k, j, u)
        if k == 2:  # the third channel joined
            inv[0, 0] *= 1.5
            corrupted.append(j)
        return grown

    monkeypatch.setattr(lasso_path, "_border", corrupting_border)
    counters = _walk_counters(corr)
    assert len(corrupted) >= a.shape[1] // 2
    assert counters[lasso_path.DRIFTED] == len(corrupted)  # each one caught
    _assert_l1_fits_are_sklearn_lasso(cr.channel_regression(corr.matrix, corr.within_cols), a, b)


def test_directions_solved_directly_are_the_kept_inverses(monkeypatch):
    """Solved afresh every event (the drifted and the singular route) or from the kept
    inverses, the fits are the same."""
    a, b = _wide_dense(seed=6)
    corr = _correlations(a, b)
    kept = cr.channel_regression(corr.matrix, corr.within_cols)
    _interpreted_walk(monkeypatch)
    monkeypatch.setattr(lasso_path, "DRIFT_TOLERANCE", -1.0)  # every check fails
    assert _walk_counters(corr)[lasso_path.DRIFTED] == a.shape[1]
    direct = cr.channel_regression(corr.matrix, corr.within_cols)
    np.testing.assert_array_equal(direct.l1_channels, kept.l1_channels)
    np.testing.assert_allclose(direct.l1_error, kept.l1_error, rtol=0, atol=1e-12)
    _assert_l1_fits_are_sklearn_lasso(direct, a, b)


def test_a_channel_in_the_span_of_the_active_ones_makes_r_aa_singular():
    """x2 = (x0 + x1)/‖·‖: bordering R_AA by it fails, and the direct route gives the
    minimum-norm direction R_AA⁺s_A (numpy's pseudo-inverse)."""
    rho = 0.3
    x2 = [1 / np.sqrt(2 + 2 * rho), 1 / np.sqrt(2 + 2 * rho)]  # x2's coefficients on x0, x1
    gram = np.array(
        [
            [1.0, rho, x2[0] + rho * x2[1]],
            [rho, 1.0, rho * x2[0] + x2[1]],
            [x2[0] + rho * x2[1], rho * x2[0] + x2[1], 1.0],
        ]
    )
    assert np.linalg.matrix_rank(gram) == 2
    order = np.array([0, 1, 2])
    inv = np.zeros((3, 3))
    inv[:2, :2] = np.linalg.inv(gram[:2, :2])
    assert lasso_path._border(inv.copy(), gram, order, 2, 2, np.zeros(3)) is False
    grown = inv.copy()
    well_posed = gram.copy()
    well_posed[2, 2] = 2.0  # no longer in the span: the bordered inverse is R_AA⁻¹
    assert lasso_path._border(grown, well_posed, order, 2, 2, np.zeros(3)) is True
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(grown, np.linalg.inv(well_posed), rtol=0, atol=100 * eps)
    sign = np.array([1.0, -1.0, 1.0])
    w = np.zeros(3)
    lasso_path._direct(gram, order, sign, 3, w)
    np.testing.assert_allclose(w, np.linalg.pinv(gram) @ sign, rtol=0, atol=1e3 * eps)


def test_the_walk_compiles_where_numba_finds_no_place_to_cache(tmp_path):
    """A process where numba can cache nowhere (only its zip-file locator, which fits no
    source file) compiles the walk in memory and fits the same as this one."""
    a, b = _wide_dense(seed=7, c_a=6)
    corr = _correlations(a, b)
    np.save(tmp_path / "cross.npy", corr.matrix)
    np.save(tmp_path / "within.npy", corr.within_cols)
    script = (
        "import sys, numpy as np\n"
        "from deepscope.analysis import channel_regression as cr, lasso_path\n"
        "assert type(lasso_path._walk._cache).__name__ == 'NullCache'\n"
        "d = sys.argv[1]\n"
        "got = cr.channel_regression(np.load(d + '/cross.npy'), np.load(d + '/within.npy'))\n"
        "np.save(d + '/error.npy', got.l1_error)\n"
    )
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True)
    here = cr.channel_regression(corr.matrix, corr.within_cols)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(np.load(tmp_path / "error.npy"), here.l1_error, atol=1e3 * eps)
