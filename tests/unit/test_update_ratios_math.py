"""deepscope.analysis.update_ratios: snapshots, norms and ‖ΔW‖/‖W‖, checked against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.analysis import update_ratios as ur

SHAPES = [(1,), (17,), (4, 5), (3, 4, 5), (2, 3, 3, 3), ()]


def _tensors(dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(dtype) for shape in SHAPES]


def _np_norm(t: torch.Tensor) -> float:
    return float(np.linalg.norm(t.detach().to(torch.float64).numpy().reshape(-1)))


def test_snapshot_is_a_detached_copy():
    params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]
    originals = [p.detach().numpy().copy() for p in params]
    copies = ur.snapshot(params)
    assert len(copies) == 2
    for copy, param, original in zip(copies, params, originals):
        assert copy.shape == param.shape and copy.dtype == param.dtype
        assert not copy.requires_grad
        assert copy.data_ptr() != param.data_ptr()
        np.testing.assert_array_equal(copy.numpy(), original)
    with torch.no_grad():
        for param in params:
            param.add_(1.0)
            param.mul_(3.0)
    for copy, original in zip(copies, originals):
        np.testing.assert_array_equal(copy.numpy(), original)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_snapshot_keeps_dtype(dtype):
    param = torch.randn(6).to(dtype)
    (copy,) = ur.snapshot([param])
    assert copy.dtype == dtype
    assert torch.equal(copy, param)


def test_snapshot_of_nothing():
    assert ur.snapshot([]) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frobenius_norms_match_numpy(dtype):
    tensors = _tensors(dtype)
    norms = ur.frobenius_norms(tensors)
    assert norms.dtype == torch.float32
    assert norms.shape == (len(tensors),)
    expected = [_np_norm(t) for t in tensors]
    np.testing.assert_allclose(norms.numpy(), expected, rtol=1e-6)


def test_frobenius_norms_float16_give_float32():
    tensors = _tensors(torch.float16)
    norms = ur.frobenius_norms(tensors)
    assert norms.dtype == torch.float32
    # The inputs are exactly representable in float64; fp16 arithmetic allows ~1e-3.
    np.testing.assert_allclose(norms.numpy(), [_np_norm(t) for t in tensors], rtol=2e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_frobenius_norms_of_low_precision_tensors_are_float32_accurate(dtype):
    # The result is documented as float32: it should carry float32 accuracy, not the
    # input's (bfloat16 keeps 8 bits, i.e. ~0.4 % error per rounding).
    tensors = _tensors(dtype, seed=5)
    norms = ur.frobenius_norms(tensors)
    np.testing.assert_allclose(norms.numpy(), [_np_norm(t) for t in tensors], rtol=1e-5)


def test_frobenius_norm_of_large_float16_tensor_does_not_overflow():
    # ‖t‖ = 1000·√10000 = 1e5 exceeds float16's largest value (65504) but not float32's.
    t = torch.full((100, 100), 1000.0, dtype=torch.float16)
    (norm,) = ur.frobenius_norms([t]).tolist()
    assert math.isfinite(norm)
    assert norm == pytest.approx(_np_norm(t), rel=1e-3)


def test_frobenius_norms_of_matrix_is_sqrt_sum_of_squares():
    m = torch.tensor([[3.0, 4.0], [0.0, 12.0]])
    assert ur.frobenius_norms([m]).tolist() == [13.0]


def test_frobenius_norms_of_nothing():
    norms = ur.frobenius_norms([])
    assert norms.shape == (0,)


def test_frobenius_norms_do_not_track_gradients():
    p = torch.nn.Parameter(torch.randn(4))
    assert not ur.frobenius_norms([p]).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_ratios_match_numpy(dtype):
    before = _tensors(dtype, seed=1)
    generator = torch.Generator().manual_seed(2)
    scales = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0]
    after = [
        b + s * torch.randn(b.shape, generator=generator).to(dtype) for b, s in zip(before, scales)
    ]
    expected = [
        np.linalg.norm((a.double().numpy() - b.double().numpy()).reshape(-1))
        / np.linalg.norm(b.double().numpy().reshape(-1))
        for a, b in zip(after, before)
    ]
    before_copy = [b.clone() for b in before]
    ratios = ur.update_ratios(before_copy, after)
    assert ratios.dtype == torch.float32
    assert ratios.shape == (len(before),)
    np.testing.assert_allclose(ratios.numpy(), expected, rtol=1e-5)


def test_update_ratios_with_precomputed_norms_match_numpy():
    generator = torch.Generator().manual_seed(3)
    before = [torch.randn(10, 10, generator=generator), torch.randn(7, generator=generator)]
    after = [b * 0.99 + 0.01 for b in before]
    expected = [
        np.linalg.norm((a.double() - b.double()).numpy()) / np.linalg.norm(b.double().numpy())
        for a, b in zip(after, before)
    ]
    snap = ur.snapshot(before)
    norms = ur.frobenius_norms(snap)
    np.testing.assert_allclose(ur.update_ratios(snap, after, norms).numpy(), expected, rtol=1e-5)


def test_update_ratios_float16_parameters():
    generator = torch.Generator().manual_seed(4)
    before = torch.randn(64, generator=generator).half()
    after = (before.float() - 0.01 * torch.randn(64, generator=generator)).half()
    expected = np.linalg.norm(after.double().numpy() - before.double().numpy()) / np.linalg.norm(
        before.double().numpy()
    )
    (ratio,) = ur.update_ratios([before.clone()], [after]).tolist()
    assert ratio == pytest.approx(expected, rel=2e-3)


def test_update_ratio_closed_form():
    before = [torch.tensor([3.0, 4.0])]  # ‖W‖ = 5
    after = [torch.tensor([3.0, 4.5])]  # ‖ΔW‖ = 0.5
    assert ur.update_ratios(before, after).tolist() == [pytest.approx(0.1)]


def test_zero_before_gives_inf_and_zero_over_zero_gives_nan():
    before = [torch.zeros(3), torch.zeros(2, 2), torch.ones(2)]
    after = [torch.tensor([0.0, 1.0, 0.0]), torch.zeros(2, 2), torch.ones(2)]
    ratios = ur.update_ratios(before, after).tolist()
    assert ratios[0] == math.inf
    assert math.isnan(ratios[1])
    assert ratios[2] == 0.0


def test_non_finite_weights_give_non_finite_ratios():
    before = [torch.tensor([math.inf, 1.0]), torch.tensor([math.nan, 1.0])]
    after = [torch.tensor([math.inf, 2.0]), torch.tensor([math.nan, 2.0])]
    ratios = ur.update_ratios(before, after).tolist()
    assert not any(math.isfinite(r) for r in ratios)


@pytest.mark.parametrize("n_before, n_after", [(2, 1), (0, 1), (1, 3)])
def test_mismatched_lengths_raise(n_before, n_after):
    before = [torch.ones(2) for _ in range(n_before)]
    after = [torch.ones(2) for _ in range(n_after)]
    with pytest.raises(ValueError, match=f"{n_before}.*{n_after}"):
        ur.update_ratios(before, after)


def test_update_ratios_of_nothing():
    assert ur.update_ratios([], []).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_measure_update_matches_numpy_and_marks_unchanged_and_zero_weights(dtype):
    generator = torch.Generator().manual_seed(7)
    moved = torch.randn(4, 5, generator=generator).to(dtype)
    still = torch.randn(6, generator=generator).to(dtype)
    zero = torch.zeros(3, dtype=dtype)
    zero_still = torch.zeros(2, dtype=dtype)
    empty = torch.zeros(0, dtype=dtype)
    before = [moved, still, zero, zero_still, empty]
    after = [
        (moved.double() + 0.05 * torch.randn(4, 5, generator=generator).double()).to(dtype),
        still.clone(),
        torch.tensor([0.0, 0.5, -0.25], dtype=dtype),
        zero_still.clone(),
        empty.clone(),
    ]
    result = ur.measure_update([b.clone() for b in before], after)
    b64, a64 = before[0].double().numpy(), after[0].double().numpy()
    expected = np.linalg.norm((a64 - b64).reshape(-1)) / np.linalg.norm(b64.reshape(-1))
    # The difference of two values of `dtype` and its norm are computed in (at least)
    # float32 from exactly representable inputs: a few float32 roundings, or a few of
    # the input dtype for half precision subtraction.
    rtol = 10 * max(torch.finfo(dtype).eps, torch.finfo(torch.float32).eps)
    assert result.ratios.dtype == torch.float32
    assert result.ratios[0].item() == pytest.approx(expected, rel=rtol)
    assert result.ratios[1].item() == 0.0  # exactly 0 / ‖W‖
    assert result.unchanged.tolist() == [False, True, False, True, True]
    assert result.zero_weight.tolist() == [False, False, True, False, False]


def test_measure_update_sees_a_change_whose_two_norm_underflows():
    # (1e-30)² underflows to 0 in float32: ‖ΔW‖₂ is 0 although a weight changed.
    before = [torch.tensor([1.0, 1e-30])]
    after = [torch.tensor([1.0, 2e-30])]
    result = ur.measure_update([b.clone() for b in before], after)
    assert ur.frobenius_norms([after[0] - before[0]]).item() == 0.0  # the trap
    assert result.unchanged.tolist() == [False]
    assert result.zero_weight.tolist() == [False]
    # The ratio itself is below what a float32 2-norm resolves: squares below the
    # smallest normal number are lost, an absolute error of up to sqrt(n · tiny).
    resolution = math.sqrt(2 * torch.finfo(torch.float32).tiny)
    assert result.ratios.item() == pytest.approx(1e-30, abs=resolution)


def test_measure_update_non_finite_weights_are_neither_unchanged_nor_zero_weight():
    before = [torch.tensor([math.inf, 1.0]), torch.tensor([math.nan, 1.0]), torch.zeros(2)]
    after = [torch.tensor([math.inf, 1.0]), torch.tensor([math.nan, 1.0])]
    after.append(torch.tensor([math.nan, 0.0]))  # a zero weight that became NaN: a fault
    result = ur.measure_update([b.clone() for b in before], after)
    assert not any(math.isfinite(r) for r in result.ratios.tolist())
    assert result.unchanged.tolist() == [False, False, False]
    assert result.zero_weight.tolist() == [False, False, False]


def test_measure_update_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 tensors before the step but 1 after"):
        ur.measure_update([torch.ones(2), torch.ones(2)], [torch.ones(2)])
