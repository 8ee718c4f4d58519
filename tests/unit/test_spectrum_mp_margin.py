"""The Marchenko–Pastur spike count's Tracy–Widom margin (deepscope.analysis.spectrum).

References: the TW1 law's published quantiles (Johnstone 2001, Table 1, from Tracy & Widom's
tables) and moments (mean -1.2065335745820, variance 1.6077810345810, Bornemann 2010);
Gaussian matrices sampled with numpy (the null of the count); planted spikes whose singular
value follows Benaych-Georges & Nadakuditi (2012).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from deepscope.analysis import spectrum as sp


@pytest.mark.parametrize("q, want", [(0.90, 0.4501), (0.95, 0.9793), (0.99, 2.0234)])
def test_tracy_widom_quantiles_match_the_tables(q, want):
    assert sp.tracy_widom1_quantile(q) == pytest.approx(want, abs=1e-4)


def test_tracy_widom_mean_and_variance():
    grid = np.linspace(-10.0, 12.0, 441)
    cdf = np.array([sp.tracy_widom1_cdf(s) for s in grid])
    assert cdf[0] < 1e-15 and 1 - cdf[-1] < 1e-13
    assert np.all(np.diff(cdf) >= -1e-14)
    # E[X] = b - ∫F and E[X²] = b² - ∫2xF over [a, b] (F(a) = 0, F(b) = 1), by Simpson
    mean = grid[-1] - scipy.integrate.simpson(cdf, x=grid)
    second = grid[-1] ** 2 - scipy.integrate.simpson(2 * grid * cdf, x=grid)
    assert mean == pytest.approx(-1.2065335745820, abs=1e-5)
    assert second - mean**2 == pytest.approx(1.6077810345810, abs=1e-4)


def test_the_tabulated_cdf_matches_the_determinant():
    points = np.array([-5.3, -2.1, -0.3, 0.77, 2.0234, 3.9])
    spline = sp._tw1_spline()
    for s in points:
        assert float(spline(s)) == pytest.approx(sp.tracy_widom1_cdf(s), abs=1e-6)


def test_johnstone_centre_and_scale():
    mu, sigma = sp.wishart_largest_centre_scale(500, 100)
    a, b = math.sqrt(499), 10.0
    assert mu == pytest.approx((a + b) ** 2, rel=1e-14)
    assert sigma == pytest.approx((a + b) * (1 / a + 1 / b) ** (1 / 3), rel=1e-14)
    assert sp.wishart_largest_centre_scale(100, 500) == (mu, sigma)  # symmetric use


def test_the_threshold_lies_above_the_hard_edge_by_a_shrinking_margin():
    margins = []
    for n in (50, 200, 800, 3200):
        edge = 2 * math.sqrt(n)
        threshold = sp.mp_spike_threshold(1.0, n, n)
        assert threshold > edge
        margins.append(threshold / edge - 1)
    assert margins == sorted(margins, reverse=True)  # relative margin ~ n^(-2/3)
    assert sp.mp_spike_threshold(2.0, 300, 100) == pytest.approx(
        2 * sp.mp_spike_threshold(1.0, 300, 100), rel=1e-12
    )
    with pytest.raises(ValueError, match="quantile"):
        sp.mp_spike_threshold(1.0, 10, 10, quantile=1.0)


DRAWS = 200
# At most this many false spikes in DRAWS pure-noise draws: the count's 0.999 quantile
# under the nominal rate 1 - MP_SPIKE_QUANTILE (a binomial margin: a correct
# implementation fails with probability below 0.1% per shape).
FALSE_SPIKES_BOUND = int(scipy.stats.binom.ppf(0.999, DRAWS, 1 - sp.MP_SPIKE_QUANTILE))


@pytest.mark.parametrize("rows, cols", [(100, 100), (200, 50), (500, 100), (50, 200)])
def test_false_spike_rate_on_gaussian_matrices(rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    false_spikes = above_hard_edge = 0
    for _ in range(DRAWS):
        values = np.linalg.svd(rng.standard_normal((rows, cols)) * 0.3, compute_uv=False)
        metrics = sp.spectrum_metrics(values, (rows, cols))
        false_spikes += metrics.num_above_mp_edge > 0
        above_hard_edge += values[0] > metrics.mp_bulk_edge
    assert FALSE_SPIKES_BOUND <= 8  # the bound is tight: 2 expected
    assert false_spikes <= FALSE_SPIKES_BOUND
    # the hard edge alone: far more (13-22% measured), the problem the margin solves
    assert above_hard_edge >= 0.1 * DRAWS


def _planted_spike_value(strength: float, n: int, p: int) -> float:
    """Where a rank-one signal of singular value `strength` lands over unit-variance noise
    n x p (n >= p): s·√((1+θ²)(c+θ²))/θ with θ = strength/√n, c = p/n, when θ > c^(1/4)
    (Benaych-Georges & Nadakuditi 2012), in units of the noise scale times √n."""
    theta, c = strength / math.sqrt(n), p / n
    assert theta > c**0.25
    return math.sqrt(n) * math.sqrt((1 + theta**2) * (c + theta**2)) / theta


@pytest.mark.parametrize("rows, cols", [(100, 100), (500, 100), (100, 500)])
def test_planted_spikes_above_the_margin_are_found(rows, cols):
    rng = np.random.default_rng(rows + 7 * cols)
    n, p = max(rows, cols), min(rows, cols)
    threshold = sp.mp_spike_threshold(1.0, rows, cols)
    # three spikes landing 1.25x, 1.6x and 2.5x the threshold
    strengths = []
    for factor in (1.25, 1.6, 2.5):
        lo, hi = (p / n) ** 0.25 * math.sqrt(n) * 1.0001, 100 * math.sqrt(n)
        target = factor * threshold
        for _ in range(200):  # bisection: the landing value grows with the strength
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _planted_spike_value(mid, n, p) < target else (lo, mid)
        strengths.append(lo)
    exact = 0
    for _ in range(40):
        u, _ = np.linalg.qr(rng.standard_normal((rows, 3)))
        v, _ = np.linalg.qr(rng.standard_normal((cols, 3)))
        matrix = rng.standard_normal((rows, cols)) + (u * strengths) @ v.T
        metrics = sp.spectrum_metrics(np.linalg.svd(matrix, compute_uv=False), (rows, cols))
        assert metrics.num_above_mp_edge >= 3
        exact += metrics.num_above_mp_edge == 3
    assert exact >= 36  # an extra (false) spike now and then, as under the null


def test_the_metrics_carry_the_threshold_they_counted_against():
    """`mp_spike_threshold` is stored: the count is the number of σ above it, and it is
    the margin at the median-estimated noise scale (NaN where the spectrum is partial)."""
    from deepscope.proto import deepscope_pb2 as pb

    rng = np.random.default_rng(3)
    rows, cols = 400, 120
    u, _ = np.linalg.qr(rng.standard_normal((rows, 2)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, 2)))
    matrix = rng.standard_normal((rows, cols)) + (u * [120.0, 80.0]) @ v.T
    s = np.linalg.svd(matrix, compute_uv=False)
    metrics = sp.spectrum_metrics(s, (rows, cols))
    assert metrics.mp_spike_threshold > metrics.mp_bulk_edge
    assert metrics.num_above_mp_edge == int(np.count_nonzero(s > metrics.mp_spike_threshold))
    noise = float(np.median(s)) / (math.sqrt(rows) * sp.mp_median(cols / rows))
    want = sp.mp_spike_threshold(noise, rows, cols)
    assert metrics.mp_spike_threshold == pytest.approx(want, rel=1e-12)
    # Written into the step as it is (the writer copies every dataclass field).
    message = pb.SpectrumMetrics(**vars(metrics))
    assert message.mp_spike_threshold == pytest.approx(want, rel=1e-12)
    assert math.isnan(sp.SpectrumMetrics.unmeasured().mp_spike_threshold)
