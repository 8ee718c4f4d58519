"""deepscope.analysis.spectrum: singular values and the metrics read from them.

References are independent of the code under test: numpy.linalg.svd / matrix_rank / cond,
each layer's own forward pass taken as a linear operator, closed forms, sampled Gaussian
matrices, scipy's KS test and synthetic Pareto samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch

from deepscope.analysis import spectrum as sp


def numpy_sv(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)


def operator_sv(module: torch.nn.Module, in_shape: tuple[int, ...]) -> np.ndarray:
    """Singular values of the linear map the layer applies to one input of `in_shape`.

    The map's matrix is built column by column from the layer's own forward pass on the
    basis inputs (bias removed), so it knows nothing of our reshaping rules.
    """
    size = int(np.prod(in_shape))
    basis = torch.eye(size, dtype=torch.float64).reshape(size, *in_shape)
    module = module.double()
    with torch.no_grad():
        zero = module(torch.zeros(1, *in_shape, dtype=torch.float64))
        columns = (module(basis) - zero).reshape(size, -1)
    return numpy_sv(columns.numpy().T)


def assert_sv_close(got, want, rtol=2e-5):
    got = np.sort(np.asarray(got, dtype=np.float64).ravel())[::-1]
    want = np.sort(np.asarray(want, dtype=np.float64).ravel())[::-1]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * want[0])


# ---------------------------------------------------------------------------
# singular values


@pytest.mark.parametrize("shape", [(7, 7), (5, 40), (40, 5), (1, 9), (64, 3)])
def test_linear_weights_match_numpy(shape):
    torch.manual_seed(0)
    weight = torch.randn(shape)
    values = sp.singular_values(weight, layer_kind="Linear")
    assert values.dtype == torch.float32
    assert values.shape == (1, min(shape))
    assert torch.all(values[0, :-1] >= values[0, 1:])  # descending
    assert_sv_close(values, numpy_sv(weight.numpy()))


@pytest.mark.parametrize(
    "module, in_shape",
    [
        (torch.nn.Conv2d(3, 8, 3), (3, 3, 3)),
        (torch.nn.Conv2d(16, 4, (3, 2)), (16, 3, 2)),  # wide: 4 x 96
        (torch.nn.Conv2d(8, 12, 3, groups=4), (8, 3, 3)),
        (torch.nn.Conv2d(6, 6, 3, groups=6), (6, 3, 3)),  # depthwise
        (torch.nn.Conv1d(4, 10, 5, groups=2), (4, 5)),
        (torch.nn.Conv3d(2, 5, 2), (2, 2, 2, 2)),
    ],
    ids=["conv2d", "conv2d-wide", "grouped", "depthwise", "conv1d-grouped", "conv3d"],
)
def test_conv_weights_match_the_layer_as_an_operator(module, in_shape):
    """A kernel-sized input gives a 1-pixel output: the conv is then exactly its matrices."""
    torch.manual_seed(1)
    layer = sp.module_weight(module)
    values = sp.singular_values(layer.weight, groups=layer.groups, layer_kind=layer.layer_kind)
    out, in_per_group = module.weight.shape[:2]
    k = int(np.prod(module.kernel_size))
    assert values.shape == (module.groups, min(out // module.groups, in_per_group * k))
    assert_sv_close(values, operator_sv(module, in_shape))


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose_weights_match_the_layer_as_an_operator(groups):
    """stride = kernel size: one input pixel maps to one out x kh x kw block, linearly."""
    torch.manual_seed(2)
    module = torch.nn.ConvTranspose2d(4, 6, (2, 3), stride=(2, 3), groups=groups)
    layer = sp.module_weight(module)
    assert layer.layer_kind == "ConvTranspose2d"
    layout = sp.matrix_layout(module.weight.shape, groups=groups, layer_kind="ConvTranspose2d")
    assert layout.matrix_shape == (groups, 4 // groups, 6 // groups * 6)
    values = sp.singular_values(module.weight, groups=groups, layer_kind="ConvTranspose2d")
    assert_sv_close(values, operator_sv(module, (4, 1, 1)))


def test_embedding_and_generic_rules_match_numpy():
    torch.manual_seed(3)
    embedding = torch.nn.Embedding(30, 6)
    layer = sp.module_weight(embedding)
    assert layer.layer_kind == "Embedding"
    spectrum = sp.layer_spectrum(layer.weight, layer_kind=layer.layer_kind)
    assert spectrum.matrix_rule == "num_embeddings x embedding_dim"
    assert_sv_close(spectrum.singular_values, numpy_sv(embedding.weight.detach().numpy()))
    # Anything else of 3+ dimensions: shape[0] x prod(shape[1:]).
    weight = torch.randn(5, 3, 4)
    spectrum = sp.layer_spectrum(weight)
    assert spectrum.matrix_shape == (1, 5, 12)
    assert spectrum.matrix_rule == "shape[0] x prod(shape[1:])"
    assert_sv_close(spectrum.singular_values, numpy_sv(weight.numpy().reshape(5, 12)))


def test_float64_on_request():
    torch.manual_seed(4)
    weight = torch.randn(20, 30, dtype=torch.float64)
    values = sp.singular_values(weight, dtype=torch.float64)
    assert values.dtype == torch.float64
    np.testing.assert_allclose(values[0].numpy(), numpy_sv(weight.numpy()), rtol=1e-12)
    half = torch.randn(8, 6).half()  # half-precision weights are decomposed in float32
    assert_sv_close(sp.singular_values(half), numpy_sv(half.float().numpy()))


def test_many_layers_are_batched_by_shape(monkeypatch):
    torch.manual_seed(5)
    weights = [torch.randn(8, 4, 3, 3) for _ in range(3)] + [torch.randn(10, 7), torch.randn(7, 10)]
    kinds = ["Conv2d"] * 3 + ["Linear"] * 2
    calls = []
    real = torch.linalg.svdvals

    def spy(matrices, *args, **kwargs):
        calls.append(tuple(matrices.shape))
        return real(matrices, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svdvals", spy)
    spectra = sp.layer_spectra([sp.LayerWeight(w, 1, k) for w, k in zip(weights, kinds)])
    # Three equal convs in one call; 10 x 7 and 7 x 10 share one (the wide one transposed).
    assert sorted(calls) == [(2, 10, 7), (3, 36, 8)]
    for weight, spectrum in zip(weights, spectra):
        assert spectrum.error == ""
        assert spectrum.singular_values.device.type == "cpu"
        assert_sv_close(spectrum.singular_values, numpy_sv(weight.numpy().reshape(len(weight), -1)))


def test_a_non_finite_layer_is_marked_and_the_others_are_measured():
    torch.manual_seed(6)
    good, bad, other = torch.randn(6, 6), torch.randn(6, 6), torch.randn(4, 2, 3)
    bad[2, 3] = math.nan
    bad[0, 0] = math.inf
    spectra = sp.layer_spectra([(good,), (bad,), (other, 2)])
    assert spectra[1].error.startswith("non-finite weight: 1 NaN and 1 infinite of 36 values")
    assert spectra[1].singular_values.shape == (1, 6)
    assert torch.all(torch.isnan(spectra[1].singular_values))
    assert spectra[0].error == "" and spectra[2].error == ""
    assert_sv_close(spectra[0].singular_values, numpy_sv(good.numpy()))
    assert_sv_close(
        spectra[2].singular_values,
        np.concatenate([numpy_sv(other[:2].reshape(2, 6)), numpy_sv(other[2:].reshape(2, 6))]),
    )
    with pytest.raises(ValueError, match="non-finite weight"):
        sp.singular_values(bad)


def test_an_svd_that_does_not_converge_marks_only_that_layer(monkeypatch):
    real = torch.linalg.svdvals

    def flaky(matrices, *args, **kwargs):
        if torch.any(matrices == 7.0):
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return real(matrices, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svdvals", flaky)
    torch.manual_seed(7)
    weights = [torch.randn(5, 4) for _ in range(3)]
    weights[1][0, 0] = 7.0  # all three share one batch, which fails; then each alone
    spectra = sp.layer_spectra([(w,) for w in weights])
    assert [bool(s.error) for s in spectra] == [False, True, False]
    assert "did not converge" in spectra[1].error
    assert torch.all(torch.isnan(spectra[1].singular_values))
    for i in (0, 2):
        assert_sv_close(spectra[i].singular_values, numpy_sv(weights[i].numpy()))
    with pytest.raises(torch.linalg.LinAlgError):
        sp.singular_values(weights[1])


@pytest.mark.parametrize("shape", [(5,), (), (0, 3)])
def test_weights_of_fewer_than_two_dimensions_or_empty_raise(shape):
    with pytest.raises(ValueError, match="2 dimensions|empty"):
        sp.singular_values(torch.zeros(shape))


def test_groups_that_do_not_divide_raise():
    with pytest.raises(ValueError, match="groups=3 does not divide"):
        sp.singular_values(torch.randn(8, 2, 3, 3), groups=3, layer_kind="Conv2d")
    with pytest.raises(ValueError, match="positive integer"):
        sp.singular_values(torch.randn(8, 2), groups=0)
    with pytest.raises(ValueError, match="float32 or float64"):
        sp.singular_values(torch.randn(8, 2), dtype=torch.float16)


def test_which_modules_are_eligible():
    class MyConv(torch.nn.Conv2d):
        pass

    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(3, 4, 5))

    assert sp.module_weight(torch.nn.BatchNorm2d(4)) is None  # 1-D weight
    assert sp.module_weight(torch.nn.LayerNorm(4)) is None
    assert sp.module_weight(torch.nn.ReLU()) is None
    assert sp.module_weight(torch.nn.LazyLinear(3)) is None  # not initialised yet
    assert sp.module_weight(MyConv(4, 6, 3, groups=2))[1:] == (2, "Conv2d")
    assert sp.module_weight(torch.nn.Bilinear(2, 3, 4))[1:] == (1, "Bilinear")
    assert sp.module_weight(torch.nn.EmbeddingBag(10, 3))[1:] == (1, "EmbeddingBag")
    assert sp.module_weight(Custom())[1:] == (1, "Custom")
    attention = torch.nn.MultiheadAttention(8, 2)
    assert sp.module_weight(attention.out_proj)[1:] == (1, "Linear")


# ---------------------------------------------------------------------------
# metrics: closed forms and numpy


def test_orthogonal_matrix_closed_forms():
    n = 12
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))
    m = sp.spectrum_metrics(numpy_sv(q), (n, n), eps=np.finfo(np.float64).eps)
    assert m.condition_number == pytest.approx(1.0, abs=1e-12)
    assert m.stable_rank == pytest.approx(n, rel=1e-12)
    assert m.effective_rank == pytest.approx(n, rel=1e-12)
    assert m.numerical_rank == n
    assert m.spectral_norm == pytest.approx(1.0, abs=1e-12)
    assert m.frobenius_norm == pytest.approx(math.sqrt(n), rel=1e-12)
    assert math.isnan(m.alpha)  # every eigenvalue equal: no tail to fit
    # The same in float32, where the singular values are equal only to rounding.
    spectrum = sp.layer_spectrum(torch.from_numpy(q.astype(np.float32)))
    m32 = sp.spectrum_metrics(spectrum.singular_values, spectrum.matrix_shape)
    assert m32.condition_number == pytest.approx(1.0, abs=1e-5)
    assert m32.stable_rank == pytest.approx(n, rel=1e-5)
    assert m32.numerical_rank == n
    assert math.isnan(m32.alpha)


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_rank_k_matrix_has_numerical_rank_k_and_a_condition_bound(rank):
    rng = np.random.default_rng(rank)
    matrix = rng.normal(size=(20, rank)) @ rng.normal(size=(rank, 15))
    values = numpy_sv(matrix)
    eps64 = np.finfo(np.float64).eps
    m = sp.spectrum_metrics(values, matrix.shape, eps=eps64)
    # Singular by construction: told by the rank, 15 - rank singular values at rounding level.
    assert m.numerical_rank == rank == np.linalg.matrix_rank(matrix)
    assert m.condition_number_is_bound
    assert m.condition_number == pytest.approx(1 / (20 * eps64), rel=1e-12)
    # float32 singular values use float32's epsilon, as numpy would for a float32 matrix
    matrix32 = matrix.astype(np.float32)
    values32 = np.linalg.svd(matrix32, compute_uv=False)
    assert sp.spectrum_metrics(values32, matrix.shape).numerical_rank == np.linalg.matrix_rank(
        matrix32
    )


def test_zero_and_singular_matrices_do_not_crash():
    zero = sp.spectrum_metrics(np.zeros(4), (4, 6))
    assert zero.condition_number == math.inf
    assert zero.numerical_rank == 0
    assert zero.spectral_norm == 0 and zero.stable_rank == 0 and zero.effective_rank == 0
    assert zero.num_above_mp_edge == 0
    assert not zero.condition_number_is_bound  # no sigma_max to bound anything with
    singular = sp.spectrum_metrics(np.array([2.0, 1.0, 0.0]), (3, 3))
    assert singular.condition_number_is_bound
    eps64 = float(np.finfo(np.float64).eps)  # float64 values: float64's resolution
    assert singular.condition_number == pytest.approx(1 / (3 * eps64), rel=1e-12)
    assert singular.numerical_rank == 2


# Seeds of torch.randn(768, 768) * 0.02 (float32) whose float32 sigma_min is below the rank
# tolerance (8, 11: about 1 in 10 seeds, as 5 of 50 GPT-2 weights) and two whose is not.
@pytest.mark.parametrize("seed, beyond_resolution", [(8, True), (11, True), (0, False), (5, False)])
def test_random_square_matrix_condition_number_against_float64(seed, beyond_resolution):
    n = 768
    weight = torch.randn(n, n, generator=torch.Generator().manual_seed(seed)) * 0.02
    spectrum = sp.layer_spectrum(weight)
    m = sp.spectrum_metrics(spectrum.singular_values, spectrum.matrix_shape)
    exact = np.linalg.svd(weight.numpy().astype(np.float64), compute_uv=False)
    eps32 = float(np.finfo(np.float32).eps)
    tol = exact[0] * n * eps32  # numpy.linalg.matrix_rank's tolerance for float32
    assert math.isfinite(m.condition_number)
    assert m.condition_number_is_bound == beyond_resolution
    if beyond_resolution:
        assert m.condition_number == pytest.approx(1 / (n * eps32), rel=n * eps32)
        # A lower bound: float32's error in sigma_min is below the tolerance, so the
        # true sigma_min is below 2 * tol and the true condition above half the bound.
        assert exact[0] / exact[-1] > m.condition_number / 2
        assert m.numerical_rank == n - 1 == np.linalg.matrix_rank(weight.numpy())
    else:
        # sigma_min is known to within the tolerance: relative error tol / sigma_min.
        rel = tol / exact[-1]
        assert m.condition_number == pytest.approx(exact[0] / exact[-1], rel=rel)
        assert m.numerical_rank == n


def test_metrics_against_numpy_on_a_random_matrix():
    rng = np.random.default_rng(8)
    matrix = rng.normal(size=(30, 50)) * np.linspace(0.1, 3, 50)
    m = sp.spectrum_metrics(numpy_sv(matrix), matrix.shape, eps=np.finfo(np.float64).eps)
    assert m.spectral_norm == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-12)
    assert m.frobenius_norm == pytest.approx(np.linalg.norm(matrix), rel=1e-12)
    assert m.condition_number == pytest.approx(np.linalg.cond(matrix), rel=1e-10)
    assert m.numerical_rank == np.linalg.matrix_rank(matrix) == 30
    assert m.stable_rank == pytest.approx(
        np.linalg.norm(matrix) ** 2 / np.linalg.norm(matrix, 2) ** 2, rel=1e-12
    )


def test_effective_rank_closed_form():
    # p = (3/4, 1/4): entropy -(3/4 ln 3/4 + 1/4 ln 1/4)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    m = sp.spectrum_metrics(np.array([3.0, 1.0]), (2, 2))
    assert m.effective_rank == pytest.approx(math.exp(entropy), rel=1e-12)
    assert m.stable_rank == pytest.approx(10 / 9, rel=1e-12)


def test_grouped_metrics_are_those_of_the_block_diagonal_matrix():
    rng = np.random.default_rng(9)
    blocks = [rng.normal(size=(4, 9)) * (g + 1) for g in range(3)]
    values = np.stack([numpy_sv(b) for b in blocks])  # [groups, k]
    full = scipy.linalg.block_diag(*blocks)
    m = sp.spectrum_metrics(values, (3, 4, 9), eps=np.finfo(np.float64).eps)
    assert m.spectral_norm == pytest.approx(np.linalg.norm(full, 2), rel=1e-12)
    assert m.frobenius_norm == pytest.approx(np.linalg.norm(full), rel=1e-12)
    assert m.condition_number == pytest.approx(np.linalg.cond(full), rel=1e-10)
    assert m.numerical_rank == np.linalg.matrix_rank(full) == 12


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="finite"):
        sp.spectrum_metrics(np.array([1.0, math.nan]), (2, 2))
    with pytest.raises(ValueError, match="finite and non-negative"):
        sp.spectrum_metrics(np.array([1.0, -1.0]), (2, 2))
    with pytest.raises(ValueError, match="more than"):
        sp.spectrum_metrics(np.ones(5), (4, 6))
    with pytest.raises(ValueError, match="rows, cols"):
        sp.spectrum_metrics(np.ones(2), (2,))


# ---------------------------------------------------------------------------
# Marchenko–Pastur


def test_mp_median_of_a_square_matrix_matches_the_quarter_circle_law():
    # y = 1: σ/(s√n) has density √(4−t²)/π on [0, 2], CDF (t√(4−t²)/2 + 2 asin(t/2))/π.
    def cdf(t):
        return (t * math.sqrt(4 - t * t) / 2 + 2 * math.asin(t / 2)) / math.pi

    want = scipy.optimize.brentq(lambda t: cdf(t) - 0.5, 0, 2, xtol=1e-14)
    assert sp.mp_median(1.0) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("rows, cols", [(300, 900), (500, 500), (900, 300), (1000, 40)])
def test_mp_edge_and_noise_scale_on_gaussian_matrices(rows, cols):
    rng = np.random.default_rng(rows + cols)
    scale = 0.37
    matrix = rng.normal(0, scale, size=(rows, cols))
    values = numpy_sv(matrix)
    m = sp.spectrum_metrics(values, (rows, cols))
    assert m.mp_noise_scale == pytest.approx(scale, rel=0.02)
    assert m.mp_bulk_edge == pytest.approx(scale * (math.sqrt(rows) + math.sqrt(cols)), rel=0.02)
    assert values[0] == pytest.approx(m.mp_bulk_edge, rel=0.03)  # the largest sits at the edge
    assert m.num_above_mp_edge <= 2  # edge fluctuations only
    # The law's median (in units of s√n) matches the sample's.
    n, k = max(rows, cols), min(rows, cols)
    assert np.median(values) / (scale * math.sqrt(n)) == pytest.approx(
        sp.mp_median(k / n), rel=0.01
    )


def test_mp_noise_estimate_ignores_a_few_strong_signals():
    rng = np.random.default_rng(10)
    rows, cols, scale = 400, 800, 0.5
    noise = rng.normal(0, scale, size=(rows, cols))
    u, _ = np.linalg.qr(rng.normal(size=(rows, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(cols, 3)))
    signal = u @ np.diag([400.0, 300.0, 200.0]) @ v.T
    m = sp.spectrum_metrics(numpy_sv(noise + signal), (rows, cols))
    assert m.num_above_mp_edge == 3
    assert m.mp_noise_scale == pytest.approx(scale, rel=0.03)
    frobenius_estimate = np.linalg.norm(noise + signal) / math.sqrt(rows * cols)
    assert abs(frobenius_estimate / scale - 1) > 0.3  # the estimate the median one replaces


# ---------------------------------------------------------------------------
# power-law tail


def pareto(rng, alpha: float, x_min: float, size: int) -> np.ndarray:
    """Samples of density ∝ x^−alpha for x ≥ x_min (inverse CDF)."""
    return x_min * (1 - rng.random(size)) ** (-1 / (alpha - 1))


@pytest.mark.parametrize("alpha", [2.0, 2.5, 4.0])
def test_alpha_recovered_from_pareto_samples(alpha):
    rng = np.random.default_rng(11)
    eigenvalues = pareto(rng, alpha, 0.5, 3000)
    fitted, x_min, distance = sp.power_law_fit(eigenvalues)
    assert fitted == pytest.approx(alpha, rel=0.05)
    assert 0 < distance < 0.05
    # spectrum_metrics fits λ = σ²
    m = sp.spectrum_metrics(np.sqrt(eigenvalues), (3000, 3000))
    assert m.alpha == pytest.approx(fitted, rel=1e-12)
    assert m.alpha_xmin == pytest.approx(x_min, rel=1e-12)


def test_x_min_found_above_a_non_power_law_bulk_and_ks_matches_scipy():
    rng = np.random.default_rng(12)
    bulk = rng.uniform(0.05, 1.0, 1500)
    tail = pareto(rng, 3.0, 1.0, 1500)
    fitted, x_min, distance = sp.power_law_fit(np.concatenate([bulk, tail]))
    assert fitted == pytest.approx(3.0, rel=0.05)
    assert x_min == pytest.approx(1.0, rel=0.1)
    # The reported distance is the KS statistic of the fitted law on the chosen tail.
    data = np.concatenate([bulk, tail])
    chosen = data[data >= x_min]
    reference = scipy.stats.kstest(chosen, scipy.stats.pareto(fitted - 1, scale=x_min).cdf)
    assert distance == pytest.approx(reference.statistic, rel=1e-9)
    # MLE at that x_min, by its closed form
    assert fitted == pytest.approx(1 + chosen.size / np.sum(np.log(chosen / x_min)), rel=1e-12)


def test_power_law_fit_without_enough_values_is_nan():
    assert all(math.isnan(v) for v in sp.power_law_fit(np.array([1.0])))
    assert all(math.isnan(v) for v in sp.power_law_fit(np.array([0.0, 0.0, 2.0])))
    assert all(math.isnan(v) for v in sp.power_law_fit(np.full(20, 3.0)))


def test_batches_are_capped_in_bytes_and_out_of_memory_falls_back_to_one_layer(monkeypatch):
    torch.manual_seed(8)
    weights = [torch.randn(6, 5) for _ in range(5)]
    calls = []
    real = torch.linalg.svdvals

    def spy(matrices, *args, **kwargs):
        calls.append(matrices.shape[0])
        if matrices.shape[0] > 1:  # as if a batch of several did not fit on the device
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(matrices, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svdvals", spy)
    monkeypatch.setattr(sp, "MAX_BATCH_BYTES", 2 * 6 * 5 * 4)  # two float32 6 x 5 matrices
    spectra = sp.layer_spectra([(w,) for w in weights])
    # Batches of 2, 2 and 1; the two of 2 run out of memory and are redone layer by layer.
    assert calls == [2, 1, 1, 2, 1, 1, 1]
    for weight, spectrum in zip(weights, spectra):
        assert spectrum.error == ""
        assert_sv_close(spectrum.singular_values, numpy_sv(weight.numpy()))


def test_a_low_rank_matrix_has_no_more_values_above_the_mp_edge_than_its_rank():
    g = np.random.default_rng(9)
    matrix = (g.standard_normal((40, 5)) @ g.standard_normal((5, 30))).astype(np.float32)
    s = np.linalg.svd(matrix.astype(np.float64), compute_uv=False).astype(np.float32)
    metrics = sp.spectrum_metrics(s, matrix.shape)
    assert metrics.numerical_rank == np.linalg.matrix_rank(matrix) == 5
    assert metrics.num_above_mp_edge <= 5
