"""deepscope.analysis.conv_operator: a convolution's operator singular values.

The reference is the operator's explicit matrix, built column by column by applying
torch's own convolution to every basis input with circular padding (the input tiled
around, or `nn.ConvNd(padding_mode="circular")` itself), and decomposed with
numpy.linalg.svd in float64; closed forms for the Frobenius norm and the counts.
Nothing in the reference uses FFTs or the polyphase rule under test.

Tolerances: singular values by a backward-stable SVD carry absolute errors of a small
multiple of eps·σ_max; the FFT perturbs each frequency matrix by about log2(n)·eps·‖W‖_F
at most. We allow TOL_FACTOR·eps·max(σ_max, ‖W‖_F), eps the weight dtype's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from deepscope.analysis import conv_operator as co

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TOL_FACTOR = 64


def circular_operator(
    weight: torch.Tensor, n: tuple[int, ...], stride, groups: int = 1, dilation=1
) -> np.ndarray:
    """The matrix of y[o, m] = Σ W[o, i, k] x[i, (s·m + δ·k) mod n], from torch's conv.

    The input is tiled circularly (any number of times: kernels longer than n too) and
    the plain convolution (no padding) applied to each basis input.
    """
    d = weight.dim() - 2
    w = weight.detach().double()
    c_in = w.shape[1] * groups
    size = c_in * math.prod(n)
    x = torch.eye(size, dtype=torch.float64).reshape(size, c_in, *n)
    k = w.shape[2:]
    dil = (dilation,) * d if isinstance(dilation, int) else tuple(dilation)
    st = (stride,) * d if isinstance(stride, int) else tuple(stride)
    for j in range(d):
        ext = dil[j] * (k[j] - 1)
        if ext:
            reps = -(-(n[j] + ext) // n[j])
            x = torch.cat([x] * reps, dim=2 + j).narrow(2 + j, 0, n[j] + ext)
    y = CONV[d](x, w, stride=st, groups=groups, dilation=dil)
    # keep the outputs m < n/s (the circular operator's outputs)
    for j in range(d):
        y = y.narrow(2 + j, 0, n[j] // st[j])
    return y.reshape(size, -1).numpy().T


def ref_sv(a: np.ndarray) -> np.ndarray:
    return np.linalg.svd(a, compute_uv=False)


def tol(weight: torch.Tensor, scale: float) -> float:
    eps = torch.finfo(weight.dtype).eps
    return TOL_FACTOR * eps * max(scale, float(weight.detach().double().norm()))


# (d, c_out, c_in, groups, kernel, stride, n): strides 1-3, kernels 1x1 to 3x5, groups,
# n from 3 to 9 odd and even, Conv1d/2d/3d.
CASES = [
    (2, 4, 3, 1, (3, 3), 1, (5, 5)),
    (2, 4, 3, 1, (1, 1), 1, (4, 4)),
    (2, 3, 2, 1, (3, 5), 1, (6, 7)),
    (2, 4, 2, 1, (3, 3), 2, (6, 6)),
    (2, 2, 3, 1, (3, 5), 2, (4, 8)),
    (2, 3, 2, 1, (3, 3), 3, (9, 6)),
    (2, 2, 2, 1, (2, 3), (1, 3), (3, 9)),
    (2, 6, 4, 2, (3, 3), 1, (5, 4)),
    (2, 4, 6, 2, (3, 3), 2, (4, 6)),
    (2, 4, 4, 4, (3, 3), 1, (6, 5)),  # depthwise
    (2, 6, 3, 3, (1, 1), 3, (3, 6)),
    (2, 6, 2, 1, (1, 1), 2, (4, 6)),  # 1x1 stride-2 shortcut: zero phases left out
    (2, 3, 4, 1, (1, 3), 2, (6, 4)),
    (1, 3, 2, 1, (3,), 1, (7,)),
    (1, 4, 2, 1, (5,), 2, (8,)),
    (1, 2, 4, 2, (3,), 3, (9,)),
    (3, 2, 2, 1, (3, 3, 3), 1, (3, 4, 3)),
    (3, 3, 2, 1, (2, 3, 1), 2, (4, 4, 6)),
    (3, 4, 4, 2, (1, 3, 3), (1, 2, 1), (3, 4, 5)),
]


def _case_id(case) -> str:
    d, co_, ci, g, k, s, n = case
    return f"{d}d-{co_}x{ci}-g{g}-k{'x'.join(map(str, k))}-s{s}-n{'x'.join(map(str, n))}"


def _weight(case, dtype, seed=0) -> torch.Tensor:
    d, c_out, c_in, g, k, s, n = case
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in // g, *k, generator=gen, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_singular_values_match_the_explicit_operator(case, dtype):
    d, c_out, c_in, g, k, s, n = case
    w = _weight(case, dtype)
    ref = ref_sv(circular_operator(w, n, s, g))
    got = co.conv_singular_values(w, n, stride=s, groups=g)
    assert got.dtype == dtype
    got = got.double().numpy()
    assert got.shape == ref.shape
    assert np.all(np.diff(got) <= 0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol(w, ref[0]))


@pytest.mark.parametrize("case", CASES[:9], ids=_case_id)
def test_count_is_the_closed_form(case):
    d, c_out, c_in, g, k, s, n = case
    st = (s,) * d if isinstance(s, int) else s
    w = _weight(case, torch.float64)
    frequencies = math.prod(ni // si for ni, si in zip(n, st))
    expected = g * frequencies * min(c_out // g, c_in // g * math.prod(st))
    assert co.conv_singular_values(w, n, stride=s, groups=g).numel() == expected


def test_real_module_with_circular_padding():
    """nn.Conv2d(padding_mode="circular") itself, "same" padding: padding only permutes."""
    torch.manual_seed(1)
    for kernel, stride, n in [((3, 5), 1, (6, 5)), ((3, 5), 2, (6, 8)), ((3, 3), 2, (4, 4))]:
        padding = tuple(kk // 2 for kk in kernel)
        conv = torch.nn.Conv2d(3, 4, kernel, stride=stride, padding=padding, bias=False)
        conv.padding_mode = "circular"
        conv = conv.double()
        size = 3 * math.prod(n)
        with torch.no_grad():
            cols = conv(torch.eye(size, dtype=torch.float64).reshape(size, 3, *n))
        assert cols.shape[2:] == tuple(ni // stride for ni in n)
        ref = ref_sv(cols.reshape(size, -1).numpy().T)
        got = co.conv_singular_values(conv.weight, n, stride=stride).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol(conv.weight, ref[0]))


@pytest.mark.parametrize("dilation", [2, (1, 3)])
def test_dilation(dilation):
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for stride, n in [(1, (7, 8)), (2, (6, 8))]:
        ref = ref_sv(circular_operator(w, n, stride, 1, dilation))
        got = co.conv_singular_values(w, n, stride=stride, dilation=dilation).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol(w, ref[0]))


def test_kernel_longer_than_the_input_is_exact_by_wrapping():
    """Taps that wrap onto the same input position add up: still the circular operator."""
    w = torch.randn(3, 2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for stride, n in [(1, (3, 2)), (2, (4, 2)), (1, (1, 1))]:
        ref = ref_sv(circular_operator(w, n, stride))
        got = co.conv_singular_values(w, n, stride=stride).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol(w, ref[0]))
        frob = np.linalg.norm(circular_operator(w, n, stride))
        assert co.operator_frobenius_norm(w, n, stride=stride) == pytest.approx(frob, rel=1e-12)


@pytest.mark.parametrize("case", CASES[:8] + CASES[11:13], ids=_case_id)
def test_top_k(case):
    d, c_out, c_in, g, k, s, n = case
    w = _weight(case, torch.float32)
    ref = ref_sv(circular_operator(w, n, s, g))
    for top_k in (1, 3, len(ref) - 1, len(ref), len(ref) + 5):
        got = co.conv_singular_values(w, n, stride=s, groups=g, top_k=top_k).double().numpy()
        assert got.shape == (min(top_k, len(ref)),)
        np.testing.assert_allclose(got, ref[:top_k], rtol=0, atol=tol(w, ref[0]))


@pytest.mark.parametrize("method", ["dense", "lanczos", "auto"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_norm_on_the_full_grid_is_the_largest_singular_value(method, dtype):
    for case in [CASES[0], CASES[3], CASES[5], CASES[8], CASES[12], CASES[15]]:
        d, c_out, c_in, g, k, s, n = case
        w = _weight(case, dtype, seed=4)
        top = ref_sv(circular_operator(w, n, s, g))[0]
        got = co.conv_operator_norm(w, n, stride=s, groups=g, grid=max(n), method=method)
        # Lanczos: residual bound rtol on σ², so σ within rtol/2 (and a Ritz value is a
        # lower bound of the largest eigenvalue).
        slack = co.NORM_RTOL / 2 * top if method != "dense" else 0.0
        assert got <= top + tol(w, top)
        assert got >= top - slack - tol(w, top)


def test_lanczos_on_larger_matrices_matches_dense():
    """64 x 96 frequency matrices (more than Lanczos' dense cut-off) at tight and default rtol."""
    w = torch.randn(64, 48, 3, 3, generator=torch.Generator().manual_seed(5))
    dense = co.conv_operator_norm(w, 12, stride=2, grid=6, method="dense")
    for rtol in (1e-3, 1e-6):
        got = co.conv_operator_norm(w, 12, stride=2, grid=6, method="lanczos", rtol=rtol)
        assert dense * (1 - rtol / 2) - tol(w, dense) <= got <= dense + tol(w, dense)
    assert co.conv_operator_norm(w, 12, stride=2, grid=6) == pytest.approx(dense, rel=5e-4)


def test_norm_on_a_coarse_grid_is_the_norm_at_stride_times_grid():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for stride, n, grid in [(1, (9, 9), 4), (2, (16, 12), (3, 2)), (1, (8, 8), 4)]:
        st = (stride, stride)
        gr = (grid, grid) if isinstance(grid, int) else grid
        g = tuple(min(gj, ni // stride) for gj, ni in zip(gr, n))
        at_grid = ref_sv(circular_operator(w, tuple(s * gj for s, gj in zip(st, g)), stride))[0]
        got = co.conv_operator_norm(w, n, stride=stride, grid=grid, method="dense")
        assert got == pytest.approx(at_grid, abs=tol(w, at_grid))
    # a grid dividing n/s samples a subset of n's frequencies: a lower bound of n's norm
    full = ref_sv(circular_operator(w, (8, 8), 1))[0]
    assert co.conv_operator_norm(w, 8, grid=4, method="dense") <= full + tol(w, full)
    # grid larger than n/s: capped at n/s, i.e. the exact norm at n
    assert co.conv_operator_norm(w, 8, grid=64, method="dense") == pytest.approx(
        full, abs=tol(w, full)
    )


def test_norm_when_the_stride_does_not_divide_n():
    """Allowed for the norm: the grid is min(grid, ceil(n/s)), the operator on s·g."""
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ref = ref_sv(circular_operator(w, (8, 8), 2))[0]  # ceil(7/2) = 4 -> input 8
    assert co.conv_operator_norm(w, 7, stride=2, method="dense") == pytest.approx(
        ref, abs=tol(w, ref)
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_frobenius_identity(case):
    """‖A‖_F = √(∏ n/s)·‖W‖_F (kernel no longer than n), = √Σσ² of the operator."""
    d, c_out, c_in, g, k, s, n = case
    st = (s,) * d if isinstance(s, int) else s
    w = _weight(case, torch.float64, seed=8)
    a = circular_operator(w, n, s, g)
    closed = math.sqrt(math.prod(ni // si for ni, si in zip(n, st))) * float(w.norm())
    got = co.operator_frobenius_norm(w, n, stride=s, groups=g)
    assert got == pytest.approx(np.linalg.norm(a), rel=1e-12)
    assert got == pytest.approx(closed, rel=1e-12)
    sv = co.conv_singular_values(w, n, stride=s, groups=g).numpy()
    assert got == pytest.approx(math.sqrt(float(np.sum(sv**2))), rel=1e-10)


def test_spectrum_full():
    case = CASES[4]
    d, c_out, c_in, g, k, s, n = case
    w = _weight(case, torch.float32, seed=9)
    a = circular_operator(w, n, s, g)
    ref = ref_sv(a)
    levels = (0.0, 0.1, 0.5, 0.9, 1.0)
    r = co.conv_operator_spectrum(w, n, stride=s, full=True, top_k=5, quantile_levels=levels)
    assert not r.norm_only and r.padding_rule == "circular"
    assert r.input_size == n and r.stride == (s, s) and r.grid_size == (n[0] // s, n[1] // s)
    assert r.count == len(ref)
    assert r.top_values.dtype == np.float32 and r.top_values.shape == (5,)
    np.testing.assert_allclose(r.top_values, ref[:5], rtol=0, atol=tol(w, ref[0]))
    np.testing.assert_allclose(r.quantiles, np.quantile(ref, levels), rtol=0, atol=tol(w, ref[0]))
    assert r.quantile_levels == levels
    assert r.operator_norm == pytest.approx(ref[0], abs=tol(w, ref[0]))
    assert r.frobenius_norm == pytest.approx(np.linalg.norm(a), rel=1e-6)
    assert r.stable_rank == pytest.approx(np.sum(ref**2) / ref[0] ** 2, rel=1e-5)
    assert r.frequencies == (n[0] // s) * (n[1] // s)
    assert r.stable_rank_per_frequency == pytest.approx(r.stable_rank / r.frequencies)
    assert r.seconds > 0 and r.error == ""


def test_spectrum_norm_only_by_default():
    case = CASES[3]
    d, c_out, c_in, g, k, s, n = case
    w = _weight(case, torch.float64, seed=10)
    a = circular_operator(w, n, s, g)
    ref = ref_sv(a)
    r = co.conv_operator_spectrum(w, n, stride=s)
    assert r.norm_only
    assert r.top_values.size == 0 and r.quantiles.size == 0 and r.quantile_levels == ()
    assert r.operator_norm == pytest.approx(ref[0], abs=tol(w, ref[0]))  # grid 16 >= n/s
    assert r.count == len(ref)
    assert r.frobenius_norm == pytest.approx(np.linalg.norm(a), rel=1e-12)
    assert r.stable_rank == pytest.approx(np.linalg.norm(a) ** 2 / ref[0] ** 2, rel=1e-9)
    # stride not dividing n: the norm still, count 0 and NaN Frobenius / stable rank
    r = co.conv_operator_spectrum(w, 7, stride=2)
    assert r.norm_only and r.count == 0
    assert math.isnan(r.frobenius_norm) and math.isnan(r.stable_rank) and r.operator_norm > 0


def test_zero_weight():
    w = torch.zeros(3, 2, 3, 3)
    assert co.conv_operator_norm(w, 8) == 0.0
    r = co.conv_operator_spectrum(w, 8, full=True)
    assert r.operator_norm == 0.0 and r.stable_rank == 0.0 and np.all(r.top_values == 0)


def test_conv_input_size():
    conv = torch.nn.Conv2d(3, 4, 3)
    assert co.conv_input_size(conv, (8, 3, 32, 24)) == (32, 24)
    assert co.conv_input_size(conv.weight, torch.Size([3, 5, 6])) == (5, 6)
    with pytest.raises(ValueError, match="expected"):
        co.conv_input_size(conv, (3, 32))


def test_bad_input_is_a_clear_error():
    w = torch.randn(4, 2, 3, 3)
    with pytest.raises(ValueError, match="not divisible by stride"):
        co.conv_singular_values(w, 7, stride=2)
    with pytest.raises(ValueError, match="not divisible by stride"):
        co.conv_operator_spectrum(w, (8, 7), stride=2, full=True)
    with pytest.raises(ValueError, match="3 to 5 dimensions"):
        co.conv_singular_values(torch.randn(4, 18), 8)
    with pytest.raises(ValueError, match="3 to 5 dimensions"):
        co.conv_operator_norm(torch.randn(2, 2, 2, 2, 2, 2), 4)
    with pytest.raises(ValueError, match="does not divide"):
        co.conv_singular_values(w, 8, groups=3)
    with pytest.raises(ValueError, match="spatial"):
        co.conv_singular_values(w, (8, 8, 8), stride=1)
    with pytest.raises(ValueError, match="at least 1"):
        co.conv_singular_values(w, (8, 0))
    with pytest.raises(ValueError, match="at least 1"):
        co.conv_operator_norm(w, 8, stride=0)
    with pytest.raises(ValueError, match="top_k"):
        co.conv_singular_values(w, 8, top_k=0)
    with pytest.raises(ValueError, match="method"):
        co.conv_operator_norm(w, 8, method="power")
    with pytest.raises(ValueError, match="rtol"):
        co.conv_operator_norm(w, 8, rtol=0)
    with pytest.raises(ValueError, match="quantile_levels"):
        co.conv_operator_spectrum(w, 8, full=True, quantile_levels=(0.5, 1.5))
    with pytest.raises(ValueError, match="floating point"):
        co.conv_singular_values(torch.ones(4, 2, 3, 3, dtype=torch.int64), 8)
    with pytest.raises(TypeError, match="torch.Tensor"):
        co.conv_singular_values(np.ones((4, 2, 3, 3)), 8)
    bad = w.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(torch.linalg.LinAlgError):
        co.conv_operator_norm(bad, 8, method="dense")
    with pytest.raises(torch.linalg.LinAlgError):
        co.conv_operator_norm(torch.full((64, 64, 3, 3), float("inf")), 8, method="lanczos")
    with pytest.raises(torch.linalg.LinAlgError):
        co.conv_singular_values(bad, 8)


def _counting_applies(monkeypatch) -> list[int]:
    """Count `_TapOperator.apply` calls (one Lanczos step each)."""
    calls = [0]
    apply = co._TapOperator.apply

    def counted(self, q):
        calls[0] += 1
        return apply(self, q)

    monkeypatch.setattr(co._TapOperator, "apply", counted)
    return calls


def _dense_norm(w: torch.Tensor, n: int, stride: int, grid: int) -> float:
    return co.conv_operator_norm(w, n, stride=stride, grid=grid, method="dense")


@pytest.mark.parametrize("stride", [1, 2])
def test_a_warm_start_gives_the_norm_in_fewer_steps(monkeypatch, stride):
    """Lanczos restarted from the last measurement's vectors on weights that moved a
    little (as between two spectra measurements): the same norm, in fewer steps."""
    gen = torch.Generator().manual_seed(11)
    w0 = torch.randn(96, 80, 3, 3, generator=gen) / 25
    w1 = w0 + 1e-3 * torch.randn(w0.shape, generator=gen) / 25
    calls = _counting_applies(monkeypatch)
    warm = co.NormWarmStart()
    n, grid = 16, 8
    co.conv_operator_norm(w0, n, stride=stride, grid=grid, method="lanczos", warm_start=warm)
    cold_steps = calls[0]
    calls[0] = 0
    got = co.conv_operator_norm(w1, n, stride=stride, grid=grid, method="lanczos", warm_start=warm)
    warm_steps = calls[0]
    want = _dense_norm(w1, n, stride, grid)
    assert want * (1 - co.NORM_RTOL / 2) - tol(w1, want) <= got <= want + tol(w1, want)
    assert co.WARM_MIN_STEPS <= warm_steps < cold_steps, (warm_steps, cold_steps)


def test_a_warm_start_from_unrelated_vectors_still_finds_the_norm():
    """Vectors of another weight of the same shape are a poor start, not a wrong answer."""
    gen = torch.Generator().manual_seed(12)
    other, w = (torch.randn(64, 72, 3, 3, generator=gen) for _ in range(2))
    warm = co.NormWarmStart()
    co.conv_operator_norm(other, 12, grid=6, method="lanczos", warm_start=warm)
    got = co.conv_operator_norm(w, 12, grid=6, method="lanczos", warm_start=warm)
    want = _dense_norm(w, 12, 1, 6)
    assert want * (1 - co.NORM_RTOL / 2) - tol(w, want) <= got <= want + tol(w, want)


def test_a_warm_start_of_another_shape_starts_cold():
    gen = torch.Generator().manual_seed(13)
    warm = co.NormWarmStart()
    co.conv_operator_norm(torch.randn(64, 72, 3, 3, generator=gen), 12, grid=6, warm_start=warm)
    w = torch.randn(80, 72, 3, 3, generator=gen)
    got = co.conv_operator_norm(w, 12, grid=6, method="lanczos", warm_start=warm)
    want = _dense_norm(w, 12, 1, 6)
    assert want * (1 - co.NORM_RTOL / 2) - tol(w, want) <= got <= want + tol(w, want)
