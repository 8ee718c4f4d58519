"""deepscope.analysis.spectrum on big matrices: the top-k and norm-only paths and their choice.

References: numpy.linalg.svd in float64 of the same matrix, and matrices built with planted
singular values (U diag(σ) Vᵀ from random orthogonal U, V: the σ are known exactly).
The randomized values are Ritz values, lower bounds of the true ones: that too is checked.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.analysis import spectrum as sp

F32 = float(np.finfo(np.float32).eps)


def numpy_sv(matrix) -> np.ndarray:
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)


def planted(rng, rows: int, cols: int, values: np.ndarray) -> np.ndarray:
    """A rows x cols matrix (rows >= cols) whose singular values are exactly `values`."""
    u, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    return (u * values) @ v.T


def _cases():
    """name: (matrix, tolerance of the worst of the top 32, relative).

    The iteration waits for the 32nd value to settle to TAIL_RTOL_FACTOR·rtol = 1e-3;
    before it did (σ_max alone stopped it), the power-law case's 32nd value came out
    3.1e-3 low.
    """
    rng = np.random.default_rng(0)
    spikes = np.r_[np.linspace(200.0, 80.0, 8), np.zeros(392)]
    tail = sp.TAIL_RTOL_FACTOR * sp.DEFAULT_NORM_RTOL
    return {
        # flat: a random initialisation, the hardest case for sigma_max (no gap)
        "gaussian 600x200": (rng.standard_normal((600, 200)), tail),
        "gaussian 300x300": (rng.standard_normal((300, 300)), tail),
        "gaussian wide 250x1200": (rng.standard_normal((250, 1200)), tail),
        # decaying: a trained layer's heavy tail
        "power law 1500x400": (planted(rng, 1500, 400, np.arange(1, 401) ** -0.7), tail),
        # strong spikes over a bulk: the bulk values just after them converge last
        "spiked 1000x400": (
            rng.standard_normal((1000, 400)) + planted(rng, 1000, 400, spikes),
            tail,
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_top_k_against_the_full_svd(name):
    matrix, top_k_rtol = CASES[name]
    want = numpy_sv(matrix)
    spectrum = sp.layer_spectrum(torch.from_numpy(matrix.astype(np.float32)), coverage="top_k")
    assert spectrum.coverage == "top_k" and spectrum.error == ""
    got = spectrum.singular_values[0].double().numpy()
    assert got.shape == (sp.DEFAULT_TOP_K,)
    assert np.all(got[:-1] >= got[1:])  # descending
    relative = (got - want[: got.size]) / want[: got.size]
    # sigma_max to the stated tolerance; the others to the measured bounds of the docstring
    assert abs(relative[0]) <= spectrum.norm_rtol == sp.DEFAULT_NORM_RTOL
    assert np.abs(relative).max() <= top_k_rtol
    # Ritz values: lower bounds, up to float32 rounding of the products
    assert relative.max() <= 20 * F32
    assert 1 <= spectrum.iterations <= sp.MAX_SUBSPACE_ITERATIONS
    # Frobenius norm: exact, from the weight
    assert spectrum.frobenius_norm == pytest.approx(np.linalg.norm(matrix), rel=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_norm_only_against_the_full_svd(name):
    matrix, _ = CASES[name]
    want = numpy_sv(matrix)
    spectrum = sp.layer_spectrum(torch.from_numpy(matrix.astype(np.float32)), coverage="norm_only")
    assert spectrum.coverage == "norm_only"
    assert spectrum.singular_values.shape == (1, 1)
    sigma = float(spectrum.singular_values[0, 0])
    assert sigma == pytest.approx(want[0], rel=sp.DEFAULT_NORM_RTOL)
    assert sigma <= want[0] * (1 + 20 * F32)
    metrics = sp.partial_spectrum_metrics(spectrum)
    stable = np.sum(want**2) / want[0] ** 2
    # exact up to the sigma_max tolerance (twice it: sigma_max is squared)
    assert metrics.stable_rank == pytest.approx(stable, rel=2 * sp.DEFAULT_NORM_RTOL + 1e-6)
    assert metrics.spectral_norm == pytest.approx(sigma, rel=1e-12)
    assert metrics.frobenius_norm == pytest.approx(np.linalg.norm(matrix), rel=1e-6)


def test_a_tighter_tolerance_is_met():
    matrix, _ = CASES["gaussian 600x200"]
    want = numpy_sv(matrix)[0]
    values, iterations = sp.top_singular_values(
        torch.from_numpy(matrix), 1, oversample=7, rtol=1e-9, max_iterations=100
    )
    assert float(values[0, 0]) == pytest.approx(want, rel=1e-8)  # float64 matrix
    coarse, coarse_iterations = sp.top_singular_values(
        torch.from_numpy(matrix), 1, oversample=7, rtol=1e-2, power_iterations=1
    )
    assert coarse_iterations < iterations
    assert float(coarse[0, 0]) == pytest.approx(want, rel=1e-2)


def test_groups_are_decomposed_each_and_the_frobenius_norm_is_the_block_diagonal_one():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((4 * 120, 30, 3, 3)).astype(np.float32)  # a grouped conv
    spectrum = sp.layer_spectrum(
        torch.from_numpy(weight), groups=4, layer_kind="Conv2d", coverage="top_k", top_k=8
    )
    assert spectrum.matrix_shape == (4, 120, 270)
    assert spectrum.singular_values.shape == (4, 8)
    blocks = weight.reshape(4, 120, 270)
    for g in range(4):
        want = numpy_sv(blocks[g])
        np.testing.assert_allclose(spectrum.singular_values[g].numpy(), want[:8], rtol=3e-3)
        assert float(spectrum.singular_values[g, 0]) == pytest.approx(want[0], rel=1e-4)
    assert spectrum.frobenius_norm == pytest.approx(
        np.linalg.norm(weight.astype(np.float64)), rel=1e-6
    )


def test_wide_weights_and_their_transposed_views_give_the_same_values():
    rng = np.random.default_rng(2)
    wide = torch.from_numpy(rng.standard_normal((150, 700)).astype(np.float32))
    a = sp.layer_spectrum(wide, coverage="top_k").singular_values
    b = sp.layer_spectrum(wide.T.contiguous(), coverage="top_k").singular_values
    c = sp.layer_spectrum(wide.T, coverage="top_k").singular_values  # a column-major view
    want = numpy_sv(wide.numpy())[:32]
    for values in (a, b, c):
        np.testing.assert_allclose(values[0].numpy(), want, rtol=3e-3)


def test_the_randomized_values_are_reproducible_by_seed():
    matrix = torch.from_numpy(CASES["gaussian 300x300"][0].astype(np.float32))
    first = sp.layer_spectrum(matrix, coverage="top_k", seed=3).singular_values
    again = sp.layer_spectrum(matrix, coverage="top_k", seed=3).singular_values
    assert torch.equal(first, again)


def test_a_small_side_within_the_block_is_decomposed_fully():
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((5000, 40)).astype(np.float32)  # 40 <= 32 + 10
    for coverage in ("top_k", "norm_only", "auto"):
        spectrum = sp.layer_spectrum(torch.from_numpy(matrix), coverage=coverage)
        assert spectrum.coverage == "full"
        np.testing.assert_allclose(
            spectrum.singular_values[0].numpy(), numpy_sv(matrix), rtol=0, atol=1e-5 * 100
        )
    values, iterations = sp.top_singular_values(torch.from_numpy(matrix), 8, oversample=40)
    assert iterations == 0
    np.testing.assert_allclose(values[0].numpy(), numpy_sv(matrix)[:8], rtol=1e-5)


def test_partial_metrics_leave_what_needs_the_whole_spectrum_unset():
    matrix = torch.from_numpy(CASES["power law 1500x400"][0].astype(np.float32))
    spectrum = sp.layer_spectrum(matrix, coverage="top_k")
    metrics = sp.partial_spectrum_metrics(spectrum)
    for name in (
        "condition_number",
        "effective_rank",
        "mp_bulk_edge",
        "mp_noise_scale",
        "alpha",
        "alpha_xmin",
        "alpha_ks_distance",
    ):
        assert math.isnan(getattr(metrics, name)), name
    assert metrics.numerical_rank == 0 and metrics.num_above_mp_edge == 0
    assert not metrics.condition_number_is_bound
    want = np.arange(1, 401) ** -0.7
    assert metrics.spectral_norm == pytest.approx(1.0, rel=1e-4)
    assert metrics.stable_rank == pytest.approx(np.sum(want**2), rel=3e-4)
    # a full spectrum gets the full metrics
    full = sp.layer_spectrum(matrix)
    assert sp.partial_spectrum_metrics(full) == sp.spectrum_metrics(
        full.singular_values, full.matrix_shape
    )
    with pytest.raises(ValueError, match="Frobenius"):
        sp.partial_spectrum_metrics(sp.Spectrum(torch.ones(1, 3), (1, 100, 100), coverage="top_k"))


def test_auto_coverage_by_size_and_by_time_budget():
    rng = np.random.default_rng(4)
    small = torch.from_numpy(rng.standard_normal((64, 27)).astype(np.float32))
    big = torch.from_numpy(rng.standard_normal((3000, 1000)).astype(np.float32))
    units = sp.svd_cost_units((1, 3000, 1000))
    assert units == pytest.approx(3000 * 1000**2 + sp.FULL_SQUARE_FACTOR * 1000**3, rel=1e-12)
    # size rule, with the default cost model (the process's own has learnt from the layers
    # other tests measured, and full vs top-k by estimated seconds depends on it)
    spectra = sp.layer_spectra(
        [(small,), (big,)], coverage="auto", full_max_units=units / 2, costs=sp.SpectrumCosts()
    )
    assert [s.coverage for s in spectra] == ["full", "top_k"]
    assert spectra[0].singular_values.shape == (1, 27)
    assert math.isnan(spectra[0].frobenius_norm) and spectra[0].norm_rtol == 0.0
    (full,) = sp.layer_spectra(
        [(big,)], coverage="auto", full_max_units=units, costs=sp.SpectrumCosts()
    )
    assert full.coverage == "full"
    # time rule, with a cost model of known speed (no timing measured)
    costs = sp.SpectrumCosts(seconds_per_unit=1e-9)
    full_s = costs.estimate((3000, 1000), "full")
    top_s = costs.estimate((3000, 1000), "top_k")
    norm_s = costs.estimate((3000, 1000), "norm_only")
    assert full_s == pytest.approx(units * 1e-9) and norm_s < top_s < full_s
    choose = sp.choose_coverage
    assert choose((3000, 1000), time_budget=full_s * 1.01, costs=costs) == "full"
    assert choose((3000, 1000), time_budget=full_s * 0.99, costs=costs) == "top_k"
    assert choose((3000, 1000), time_budget=top_s * 0.99, costs=costs) == "norm_only"
    assert choose((3000, 1000), time_budget=norm_s * 0.01, costs=costs) == "norm_only"
    assert choose((3000, 1000), full_max_units=None, costs=costs) == "full"
    budget = top_s * 0.99
    (spectrum,) = sp.layer_spectra([(big,)], coverage="auto", time_budget=budget, costs=costs)
    assert spectrum.coverage == "norm_only" and spectrum.singular_values.shape == (1, 1)


def test_a_very_tall_matrix_past_the_size_limit_stays_full_where_top_k_costs_more():
    """50257 x 768 (GPT-2's token embedding): LAPACK's QR-first SVD costs m·n², no more
    than the randomized path's passes, so the size limit alone does not send it there;
    a time budget below the full SVD's estimate still does (to σ_max alone, cheaper)."""
    costs = sp.SpectrumCosts(seconds_per_unit=1e-9)
    shape = (50257, 768)
    full_s, top_s = costs.estimate(shape, "full"), costs.estimate(shape, "top_k")
    assert top_s > full_s  # the premise, from the cost model
    choose = sp.choose_coverage
    assert choose(shape, full_max_units=1.0, costs=costs) == "full"
    assert choose(shape, full_max_units=1.0, time_budget=full_s * 1.01, costs=costs) == "full"
    assert choose(shape, full_max_units=1.0, time_budget=full_s * 0.99, costs=costs) == (
        "norm_only"
    )
    # a square matrix past the size limit: the top k are far cheaper
    assert choose((4096, 4096), costs=costs) == "top_k"


def test_costs_are_learnt_from_what_was_measured():
    costs = sp.SpectrumCosts(seconds_per_unit=1.0)
    costs.observe(1e9, "full", "cpu", 2.0)
    assert costs.seconds_per_unit("full", "cpu") == pytest.approx(2e-9)
    assert costs.seconds_per_unit("top_k", "cpu") == 1.0  # per path
    costs.observe(1e3, "top_k", "cpu", 5.0)  # too small to learn from: overheads
    assert costs.seconds_per_unit("top_k", "cpu") == 1.0
    rng = np.random.default_rng(5)
    big = torch.from_numpy(rng.standard_normal((2000, 400)).astype(np.float32))
    sp.layer_spectra([(big,)], coverage="top_k", costs=costs)
    assert costs.seconds_per_unit("top_k", "cpu") != 1.0  # learnt (a real measurement)


def test_a_non_finite_big_weight_is_marked_with_nan_values_of_its_coverage():
    rng = np.random.default_rng(6)
    bad = torch.from_numpy(rng.standard_normal((3, 400, 100)).astype(np.float32))
    bad[1, 5, 7] = math.inf
    good = torch.from_numpy(rng.standard_normal((500, 200)).astype(np.float32))
    spectra = sp.layer_spectra([(bad.reshape(1200, 100), 3), (good,)], coverage="top_k", top_k=5)
    assert spectra[0].error.startswith("non-finite weight: 0 NaN and 1 infinite")
    assert spectra[0].singular_values.shape == (3, 5)
    assert torch.all(torch.isnan(spectra[0].singular_values))
    assert spectra[1].error == "" and spectra[1].coverage == "top_k"
    np.testing.assert_allclose(
        spectra[1].singular_values[0].numpy(), numpy_sv(good.numpy())[:5], rtol=3e-3
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"coverage": "some"}, "coverage"),
        ({"top_k": 0}, "top_k"),
        ({"norm_rtol": 0}, "norm_rtol"),
        ({"time_budget": -1}, "time_budget"),
    ],
)
def test_bad_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        sp.layer_spectra([(torch.ones(4, 4),)], **options)


def test_batching_only_where_faster(monkeypatch):
    assert sp.batches_equal_shapes("cuda", 4608, 512)
    assert sp.batches_equal_shapes("cpu", 64, 64)
    assert not sp.batches_equal_shapes("cpu", 576, 64)  # a ResNet-18 class: slower batched
    calls = []
    real = torch.linalg.svdvals

    def spy(matrices, *args, **kwargs):
        calls.append(tuple(matrices.shape))
        return real(matrices, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svdvals", spy)
    torch.manual_seed(7)
    weights = [torch.randn(64, 64, 3, 3) for _ in range(3)] + [torch.randn(16, 8) for _ in range(4)]
    spectra = sp.layer_spectra([sp.LayerWeight(w, 1, "Conv2d") for w in weights])
    # 576 x 64 (tall view of 64 x 576): one call each; 16 x 8: one batch of 4
    assert sorted(calls) == [(1, 576, 64)] * 3 + [(4, 16, 8)]
    for weight, spectrum in zip(weights, spectra):
        np.testing.assert_allclose(
            spectrum.singular_values[0].numpy(),
            numpy_sv(weight.reshape(len(weight), -1).numpy()),
            rtol=0,
            atol=1e-5 * numpy_sv(weight.reshape(len(weight), -1).numpy())[0],
        )


def test_top_k_of_a_very_tall_matrix_stays_below_the_true_values():
    """20000 x 768 Gaussian (an embedding's shape): Ritz values never overshoot.

    With one Gram-Schmidt pass the basis lost orthogonality on such matrices and
    σ_max came out 2-3x too high; the Ritz values of an orthonormal basis are lower
    bounds of the true ones (interlacing) and σ_max converges to within rtol.
    """
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((20000, 768)).astype(np.float32)
    want = numpy_sv(matrix)
    values, iterations = sp.top_singular_values(torch.from_numpy(matrix), 8)
    got = values[0].double().numpy()
    assert iterations > 0  # the randomized path, not svdvals
    slack = 64 * F32 * want[0]  # float32 products over 20000 rows
    assert np.all(got <= want[:8] + slack)
    assert got[0] >= want[0] * (1 - 10 * sp.DEFAULT_NORM_RTOL)


def test_norm_only_meets_its_tolerance_where_the_top_is_flat():
    """σ evenly from 1 to 0.5 (800 values): σ_max creeps up slowly and unevenly.

    With the last change alone as the stopping rule and 16 iterations at most this came
    out 8.3e-4 low (8× norm_rtol); the extrapolated rule and the norm-only path's own cap
    bring it within norm_rtol. σ_max = 1 exactly (planted).
    """
    rng = np.random.default_rng(0)
    matrix = planted(rng, 1600, 800, np.linspace(1.0, 0.5, 800))
    spectrum = sp.layer_spectrum(torch.from_numpy(matrix.astype(np.float32)), coverage="norm_only")
    sigma = float(spectrum.singular_values[0, 0])
    assert sigma == pytest.approx(1.0, rel=sp.DEFAULT_NORM_RTOL)
    assert sigma <= 1.0 + 20 * F32
    assert spectrum.iterations > sp.MAX_SUBSPACE_ITERATIONS


@pytest.mark.parametrize("rank", [5, 20])
def test_top_k_of_a_matrix_of_lower_rank_than_k(rank):
    """Rank 5 or 20 (3000 x 700), top 32: the non-zero values to float32 precision, the
    rest near 0 — within √eps·σ_max, the Rayleigh matrix's rounding (σ² within
    eps·σ_max²), not exactly 0 — and the iteration stops once those are settled (the
    values at that floor jitter: waiting for them to settle ran to the cap at rank 5)."""
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((3000, rank)) @ rng.standard_normal((rank, 700))
    want = numpy_sv(matrix)
    values, iterations = sp.top_singular_values(torch.from_numpy(matrix.astype(np.float32)), 32)
    got = values[0].double().numpy()
    assert got.shape == (32,)
    assert 0 < iterations < sp.MAX_SUBSPACE_ITERATIONS
    assert np.abs(got[:rank] - want[:rank]).max() <= 100 * F32 * want[0]
    assert np.all(got[rank:] <= 4 * math.sqrt(F32) * want[0])
