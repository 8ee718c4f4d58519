"""deepscope.analysis.layer_statistics covariance: co-moments, eigenvalues and rank metrics.

Against numpy in float64 on the same rows, and against closed forms
(isotropic: effective dimension = effective rank = C, saturation =
⌈0.99·C⌉/C; rank one: 1, 1/C, 1). A batch's co-moment is one float32 matrix
product (float64 for float64 input), so tolerances are a few float32 epsilons
times √rows, relative to the largest variance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.analysis.layer_statistics import covariance as cov
from deepscope.analysis.layer_statistics.covariance import (
    CovarianceSums,
    covariance_eigenvalues,
    covariance_eigenvalues_many,
    covariance_metrics,
    covariance_sums,
    delve_saturation,
    effective_dimension,
    effective_rank,
    sample_rows,
)

EXACT = 4 * np.finfo(np.float64).eps
"""Saturation is k/C of integers: only the division rounds."""


@pytest.fixture(params=["reads", "never_reads"])
def path(request, monkeypatch):
    """Both paths: the CPU's (skips the masking of all-finite rows) and the accelerators'."""
    if request.param == "never_reads":
        monkeypatch.setattr(cov, "reads_results", lambda device: False)
    return request.param


def _tolerance(dtype: torch.dtype, rows: int) -> float:
    work = torch.float64 if dtype == torch.float64 else torch.float32
    return 16 * torch.finfo(work).eps * math.sqrt(max(rows, 1))


def _rows(x: torch.Tensor, channel_dim) -> np.ndarray:
    a = x.detach().to(torch.float64).numpy()
    if channel_dim is None:
        return a.reshape(-1, 1)
    return np.moveaxis(a, channel_dim, -1).reshape(-1, a.shape[channel_dim])


def _np_sums(rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    rows = rows[np.isfinite(rows).all(axis=1)]
    mean = rows.mean(axis=0)
    centered = rows - mean
    return rows.shape[0], mean, centered.T @ centered


def _check_sums(sums: CovarianceSums, rows: np.ndarray, dtype: torch.dtype) -> None:
    n, mean, comoment = _np_sums(rows)
    assert int(sums.count) == n
    assert sums.mean.dtype == sums.comoment.dtype == torch.float64
    tol = _tolerance(dtype, n)
    scale = float(np.sqrt(np.max(np.diag(comoment)) / n))
    np.testing.assert_allclose(sums.mean.numpy(), mean, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(
        sums.comoment.numpy(), comoment, rtol=0, atol=tol * np.max(np.diag(comoment))
    )


def _activations(shape, dtype=torch.float32, seed=0, offset=0.0):
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(shape[1], shape[1], generator=generator, dtype=torch.float64)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    x = torch.einsum("nc...,cd->nd...", x, mix) + offset  # correlated channels
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape,channel_dim", [((6, 5, 4, 3), 1), ((40, 7), 1), ((5, 9, 6), 1)])
def test_comoments_match_numpy(path, dtype, shape, channel_dim):
    x = _activations(shape, dtype)
    if len(shape) == 3:
        x = x.transpose(1, 2)  # (N, L, C), channels last
        channel_dim = 2
    sums = covariance_sums(x, channel_dim, max_samples=10_000)
    _check_sums(sums, _rows(x, channel_dim), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_comoments_far_from_zero(path, dtype):
    """Rows centred before the product: a mean of 1e3 times the spread loses nothing."""
    x = _activations((64, 6), dtype, seed=1, offset=1e3)
    _check_sums(covariance_sums(x, 1), _rows(x, 1), dtype)


def test_strided_subsample_rule():
    x = torch.arange(2 * 3 * 37, dtype=torch.float64).reshape(2, 3, 37)  # 74 positions
    rows = sample_rows(x, 1, max_samples=10)
    everything = _rows(x, 1)
    stride = math.ceil(74 / 10)
    np.testing.assert_array_equal(rows.numpy(), everything[::stride])
    assert rows.shape == (len(range(0, 74, stride)), 3) and rows.shape[0] <= 10
    assert int(covariance_sums(x, 1, max_samples=10).count) == rows.shape[0]
    np.testing.assert_array_equal(sample_rows(x, 1, max_samples=74).numpy(), everything)
    np.testing.assert_array_equal(
        sample_rows(x, None, max_samples=100).numpy(),
        x.reshape(-1, 1)[:: math.ceil(222 / 100)].numpy(),
    )


def test_subsampled_comoments_are_those_of_the_sampled_rows(path):
    x = _activations((16, 8, 6, 6), seed=2)
    sums = covariance_sums(x, 1, max_samples=100)
    rows = _rows(x, 1)[:: math.ceil(16 * 36 / 100)]
    _check_sums(sums, rows, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_rows_with_non_finite_values_are_left_out(path, dtype):
    x = _activations((30, 5), dtype, seed=3)
    x[3, 1] = float("nan")
    x[7, 0] = float("inf")
    x[8, 4] = float("-inf")
    sums = covariance_sums(x, 1)
    assert int(sums.count) == 27
    _check_sums(sums, _rows(x, 1), dtype)
    assert torch.isfinite(sums.comoment).all()


def test_no_finite_rows_gives_nan_eigenvalues_not_an_error(path):
    x = torch.full((4, 3), float("nan"))
    sums = covariance_sums(x, 1)
    assert int(sums.count) == 0
    eigenvalues = covariance_eigenvalues(sums)
    assert eigenvalues.shape == (3,) and torch.isnan(eigenvalues).all()
    assert torch.isnan(covariance_metrics(eigenvalues)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merge_of_two_halves_equals_the_whole(path, dtype):
    x = _activations((20, 6, 3, 3), dtype, seed=4, offset=2.0)
    x[:10] += 5.0  # the halves have different means: the δδᵀ term matters
    whole = covariance_sums(x, 1, max_samples=10_000)
    merged = covariance_sums(x[:8], 1, max_samples=10_000).merge(
        covariance_sums(x[8:], 1, max_samples=10_000)
    )
    _check_sums(merged, _rows(x, 1), dtype)
    assert int(merged.count) == int(whole.count)
    tol = _tolerance(dtype, int(whole.count))
    scale = float(whole.comoment.diagonal().max())
    np.testing.assert_allclose(
        merged.comoment.numpy(), whole.comoment.numpy(), rtol=0, atol=tol * scale
    )


def test_merge_is_associative_and_handles_an_empty_part():
    parts = [_activations((n, 4), torch.float64, seed=5 + n) for n in (3, 11, 6)]
    sums = [covariance_sums(p, 1) for p in parts]
    left = sums[0].merge(sums[1]).merge(sums[2])
    right = sums[0].merge(sums[1].merge(sums[2]))
    np.testing.assert_allclose(left.comoment.numpy(), right.comoment.numpy(), rtol=1e-12)
    _check_sums(left, np.concatenate([_rows(p, 1) for p in parts]), torch.float64)
    empty = covariance_sums(torch.full((2, 4), float("nan"), dtype=torch.float64), 1)
    with_empty = sums[1].merge(empty)
    assert torch.equal(with_empty.count, sums[1].count)
    np.testing.assert_allclose(with_empty.comoment.numpy(), sums[1].comoment.numpy(), rtol=1e-15)
    np.testing.assert_allclose(empty.merge(sums[1]).mean.numpy(), sums[1].mean.numpy(), rtol=1e-15)


def test_merge_refuses_different_channel_counts():
    with pytest.raises(ValueError, match="3 and 4 channels"):
        covariance_sums(torch.ones(5, 3), 1).merge(covariance_sums(torch.ones(5, 4), 1))


@pytest.mark.parametrize(
    "args,message",
    [
        ((torch.ones(4, 3, dtype=torch.int32), 1), "floating-point"),
        ((torch.ones(4, 3), 2), "out of range"),
        ((torch.ones(4, 3), 1, 0), "positive int"),
        ((torch.ones(4, 3), 1, 2.5), "positive int"),
    ],
)
def test_bad_input_says_what_to_do(args, message):
    with pytest.raises(ValueError, match=message):
        covariance_sums(*args)


# ---------------------------------------------------------------------------- eigenvalues


def test_eigenvalues_match_numpy():
    x = _activations((200, 12), torch.float64, seed=6)
    sums = covariance_sums(x, 1)
    eigenvalues = covariance_eigenvalues(sums)
    n, _, comoment = _np_sums(_rows(x, 1))
    expected = np.clip(np.linalg.eigvalsh(comoment / n)[::-1], 0, None)
    assert eigenvalues.dtype == torch.float64 and eigenvalues.shape == (12,)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])
    np.testing.assert_allclose(eigenvalues.numpy(), expected, rtol=0, atol=1e-12 * expected[0])


def test_eigenvalues_are_clipped_at_zero():
    x = torch.randn(3, 10, dtype=torch.float64)  # 3 rows, 10 channels: rank ≤ 2
    eigenvalues = covariance_eigenvalues(covariance_sums(x, 1))
    assert torch.all(eigenvalues >= 0)
    assert int((eigenvalues > 1e-10 * eigenvalues[0]).sum()) == 2


def test_eigenvalues_of_many_are_those_of_each():
    sums = [covariance_sums(_activations((50, c), torch.float64, seed=c), 1) for c in (3, 5, 3, 1)]
    many = covariance_eigenvalues_many(sums)
    assert [e.shape[0] for e in many] == [3, 5, 3, 1]
    for s, e in zip(sums, many):
        torch.testing.assert_close(e, covariance_eigenvalues(s), rtol=0, atol=0)
    assert covariance_eigenvalues_many([]) == []


# ---------------------------------------------------------------------------- metrics


def _np_effective_dimension(lam):
    return lam.sum() ** 2 / (lam**2).sum()


def _np_saturation(lam, threshold):
    lam = np.sort(lam)[::-1]
    share = np.cumsum(lam) / lam.sum()
    for k in range(1, lam.size + 1):
        if share[k - 1] >= threshold - 1e-12:
            return k / lam.size
    return 1.0


def _np_effective_rank(lam):
    p = lam / lam.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99, 1.0])
def test_metrics_match_direct_formulas(seed, threshold):
    rng = np.random.default_rng(seed)
    lam = np.sort(rng.exponential(size=20) ** 3)[::-1]
    lam[-3:] = 0  # some exact zeros
    t = torch.from_numpy(lam.copy())
    assert float(effective_dimension(t)) == pytest.approx(_np_effective_dimension(lam), rel=1e-12)
    assert float(delve_saturation(t, threshold)) == pytest.approx(
        _np_saturation(lam, threshold), rel=EXACT
    )
    assert float(effective_rank(t)) == pytest.approx(_np_effective_rank(lam), rel=1e-12)
    metrics = covariance_metrics(t, threshold)
    assert metrics.dtype == torch.float64 and metrics.shape == (3,)
    assert metrics.tolist() == pytest.approx(
        [_np_effective_dimension(lam), _np_saturation(lam, threshold), _np_effective_rank(lam)],
        rel=1e-12,
    )


@pytest.mark.parametrize("channels", [1, 2, 7, 64, 100, 128, 512])
def test_isotropic_closed_forms(channels):
    lam = torch.full((channels,), 0.37, dtype=torch.float64)
    assert float(effective_dimension(lam)) == pytest.approx(channels, rel=1e-12)
    assert float(effective_rank(lam)) == pytest.approx(channels, rel=1e-12)
    assert float(delve_saturation(lam)) == pytest.approx(
        math.ceil(0.99 * channels) / channels, rel=EXACT
    )


@pytest.mark.parametrize("channels", [1, 3, 64])
def test_rank_one_closed_forms(channels):
    lam = torch.zeros(channels, dtype=torch.float64)
    lam[0] = 4.2
    assert float(effective_dimension(lam)) == pytest.approx(1.0, rel=1e-12)
    assert float(effective_rank(lam)) == pytest.approx(1.0, rel=1e-12)
    assert float(delve_saturation(lam)) == pytest.approx(1 / channels, rel=EXACT)


def test_saturation_sorts_its_input():
    lam = torch.tensor([0.0, 1.0, 8.0, 1.0], dtype=torch.float64)
    assert float(delve_saturation(lam, 0.8)) == pytest.approx(1 / 4, rel=EXACT)
    assert float(delve_saturation(lam, 0.85)) == pytest.approx(2 / 4, rel=EXACT)


@pytest.mark.parametrize("channels", [4, 32])
def test_isotropic_and_rank_one_activations_end_to_end(channels):
    """From activations, not eigenvalues: ±e_i rows are isotropic; u·vᵀ rows rank one."""
    eye = torch.eye(channels, dtype=torch.float64)
    isotropic = covariance_metrics(
        covariance_eigenvalues(covariance_sums(torch.cat([eye, -eye]), 1))
    )
    assert isotropic.tolist() == pytest.approx(
        [channels, math.ceil(0.99 * channels) / channels, channels], rel=1e-9
    )
    generator = torch.Generator().manual_seed(channels)
    u = torch.randn(50, 1, generator=generator, dtype=torch.float64)
    v = torch.randn(1, channels, generator=generator, dtype=torch.float64)
    metrics = covariance_metrics(covariance_eigenvalues(covariance_sums(u @ v + 3.0, 1)))
    assert metrics[0].item() == pytest.approx(1.0, rel=1e-9)
    assert metrics[1].item() == pytest.approx(1 / channels, rel=EXACT)
    assert metrics[2].item() == pytest.approx(1.0, rel=1e-6)


def test_no_variance_gives_nan():
    zeros = torch.zeros(5, dtype=torch.float64)
    assert torch.isnan(covariance_metrics(zeros)).all()
    assert torch.isnan(delve_saturation(torch.zeros(0, dtype=torch.float64)))


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        delve_saturation(torch.ones(3, dtype=torch.float64), threshold)


def test_nothing_reads_a_value_off_the_cpu():
    """Meta tensors raise on any read of a value: a stand-in for an accelerator's stream."""
    x = torch.empty(8, 5, 6, 6, device="meta")
    sums = covariance_sums(x, 1, max_samples=100)
    sums = sums.merge(covariance_sums(torch.empty(3, 5, dtype=torch.bfloat16, device="meta"), 1))
    (eigenvalues,) = covariance_eigenvalues_many([sums])
    assert eigenvalues.shape == (5,) and eigenvalues.is_meta
    assert covariance_metrics(eigenvalues).shape == (3,)
