"""deepscope.analysis.layer_statistics activation sums and parameter norms, against numpy.

References are float64 numpy on the recorded values. The sums accumulate in
float32 (float16 and bfloat16 are widened to it exactly) by pairwise
reductions, so their error is bounded by a few float32 epsilons times √n:
`_tolerance` derives every tolerance from the accumulating dtype's epsilon.
Both of a batch's paths are run: the CPU's (it reads whether min and max are
finite, to skip the masking) and the accelerators' (always masked), by
patching `reads_results`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.analysis.layer_statistics import activations as act
from deepscope.analysis.layer_statistics.activations import (
    ACTIVATION_STATISTICS,
    STATISTICS,
    activation_statistics,
    activation_sums,
    activation_table,
)
from deepscope.analysis.layer_statistics.bounds import saturation_bounds, saturation_thresholds
from deepscope.analysis.layer_statistics.parameters import (
    PARAMETER_STATISTICS,
    parameter_norms,
    parameter_table,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.fixture(params=["reads", "never_reads"])
def path(request, monkeypatch):
    """Run a test on both paths of a batch: the CPU's and the accelerators'."""
    if request.param == "never_reads":
        monkeypatch.setattr(act, "reads_results", lambda device: False)
    return request.param


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tolerance(dtype: torch.dtype, n: int) -> float:
    """Relative error bound of a sum of n values accumulated in `dtype`'s accumulator."""
    return 16 * torch.finfo(_accumulator(dtype)).eps * math.sqrt(max(n, 1))


def _reference(x: torch.Tensor, channel_dim, bounds=None, tolerance=0.01) -> dict[str, float]:
    """Every statistic by numpy in float64, from the definitions (not from our sums)."""
    a = x.detach().to(torch.float64).numpy()
    finite = np.isfinite(a)
    f = a[finite]
    n = f.size
    out: dict[str, float] = {}
    nan = float("nan")
    out["mean"] = float(f.mean()) if n else nan
    out["std"] = float(f.std()) if n else nan
    out["rms"] = float(np.sqrt(np.mean(f * f))) if n else nan
    out["max_abs"] = float(np.abs(f).max()) if n else nan
    out["zero_fraction"] = float(np.mean(f == 0)) if n else nan
    if bounds is None or not n:
        out["saturated_fraction"] = nan
    else:
        lo, hi = bounds
        width = tolerance * (hi - lo)
        low, high = lo + width, hi - width
        if x.dtype != torch.float64:  # compared in float32: the cut points rounded to it
            low, high = float(np.float32(low)), float(np.float32(high))
        out["saturated_fraction"] = float(np.mean((f <= low) | (f >= high)))
    out["non_finite_fraction"] = float(1 - finite.mean()) if a.size else nan
    if channel_dim is None:
        per_channel = np.where(finite, a, 0).reshape(1, -1)
    else:
        per_channel = np.moveaxis(np.where(finite, a, 0), channel_dim, 0).reshape(
            a.shape[channel_dim], -1
        )
    dead = ~np.any(per_channel != 0, axis=1)
    out["dead_fraction"] = float(dead.mean()) if dead.size else nan
    out["count"] = float(a.size)
    out["channels"] = float(dead.size)
    out["dead_channels"] = float(dead.sum())
    return out


def _check(got: dict[str, float], want: dict[str, float], dtype: torch.dtype, n: int) -> None:
    tol = _tolerance(dtype, n)
    scale = want["rms"] if math.isfinite(want["rms"]) else 1.0
    for name, expected in want.items():
        value = got[name]
        if math.isnan(expected):
            assert math.isnan(value), f"{name}: {value} where numpy has NaN"
        elif name == "mean":  # near zero its error is relative to the spread
            assert abs(value - expected) <= tol * scale + 1e-300, (name, value, expected)
        elif name in ("count", "channels", "dead_channels"):
            assert value == expected, (name, value, expected)
        elif name.endswith("fraction"):  # ratios of exact counts
            assert abs(value - expected) <= 4 * np.finfo(np.float64).eps, (name, value, expected)
        else:
            assert value == pytest.approx(expected, rel=tol), (name, value, expected)


def _activations(shape, dtype, seed=0, offset=0.0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,channel_dim",
    [
        ((8, 6, 5, 7), 1),
        ((16, 12), 1),
        ((4, 9, 10), 2),
        ((4, 10, 9), 1),
        ((2, 3, 4, 5, 6), 1),
        ((50,), None),
    ],
)
def test_statistics_match_numpy(path, dtype, shape, channel_dim):
    x = _activations(shape, dtype)
    got = activation_statistics(activation_sums(x, channel_dim))
    _check(got, _reference(x, channel_dim), dtype, x.numel())
    assert set(got) == set(ACTIVATION_STATISTICS) | {"count", "channels", "dead_channels"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_dead_channels_and_exact_zeros_planted(path, dtype):
    x = torch.relu(_activations((16, 10, 4, 4), dtype, seed=1))
    x[:, [2, 7]] = 0  # dead: zero on every sample
    x[:15, 4] = 0  # alive on one sample only
    x[3, 5, 1, 1] = float("nan")  # a channel with a NaN and its other values not all zero
    got = activation_statistics(activation_sums(x, 1))
    want = _reference(x, 1)
    assert want["dead_channels"] == 2  # the reference sees what was planted
    _check(got, want, dtype, x.numel())
    assert got["zero_fraction"] > 0.5  # ReLU zeros plus the planted ones


def test_a_channel_of_zeros_and_non_finite_values_is_dead():
    """Dead: no finite non-zero value. Its NaNs are counted in non_finite_fraction."""
    x = torch.randn(4, 3, 2, 2)
    x[:, 1] = 0
    x[0, 1, 0, 0] = float("nan")
    x[1, 1, 0, 0] = float("inf")
    got = activation_statistics(activation_sums(x, 1))
    assert got["dead_channels"] == 1
    assert got["non_finite_fraction"] == pytest.approx(2 / x.numel(), rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Tanh(),
        torch.nn.Sigmoid(),
        torch.nn.ReLU6(),
        torch.nn.Hardtanh(-2.0, 3.0),
        torch.nn.Hardsigmoid(),
        torch.nn.Softsign(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_saturated_units_planted(path, dtype, module):
    pre = _activations((32, 8), torch.float64, seed=2, scale=2.0)
    pre[:, 3] = 1e3  # this unit sits at the upper bound
    pre[:5, 5] = -1e3  # and this one at the lower bound on five samples
    x = module(pre).to(dtype)
    bounds = saturation_bounds(module)
    got = activation_statistics(activation_sums(x, 1, bounds))
    want = _reference(x, 1, bounds)
    _check(got, want, dtype, x.numel())
    assert want["saturated_fraction"] >= (32 + 5) / x.numel()


@pytest.mark.parametrize("tolerance", [0.0, 0.05, 0.2])
def test_saturation_tolerance_is_a_fraction_of_the_range(tolerance):
    x = torch.linspace(0.0, 6.0, 601, dtype=torch.float64).reshape(601, 1)
    bounds = saturation_bounds(torch.nn.ReLU6())
    assert bounds == (0.0, 6.0)
    got = activation_statistics(activation_sums(x, 1, bounds, tolerance))
    width = tolerance * 6.0
    values = x.numpy().ravel()
    expected = np.mean((values <= width) | (values >= 6.0 - width))
    assert got["saturated_fraction"] == pytest.approx(expected, abs=1e-15)
    assert saturation_thresholds(bounds, tolerance) == pytest.approx((width, 6.0 - width))


def test_not_bounded_has_no_saturated_fraction():
    got = activation_statistics(activation_sums(torch.ones(4, 2), 1))
    assert math.isnan(got["saturated_fraction"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_values_counted_and_excluded(path, dtype):
    x = _activations((8, 5, 3, 3), dtype, seed=3)
    x[0, 0, 0, 0] = float("nan")
    x[1, 2, 1, 1] = float("inf")
    x[2, 4, 2, 0] = float("-inf")
    x[3, 1] = float("nan")  # 9 more
    got = activation_statistics(activation_sums(x, 1))
    want = _reference(x, 1)
    assert want["non_finite_fraction"] == pytest.approx(12 / x.numel())
    _check(got, want, dtype, x.numel())
    assert all(math.isfinite(got[k]) for k in ("mean", "std", "rms", "max_abs"))


def test_all_non_finite_gives_nan_statistics_not_an_error(path):
    x = torch.full((4, 3), float("nan"))
    got = activation_statistics(activation_sums(x, 1))
    assert got["non_finite_fraction"] == pytest.approx(1.0, rel=4 * np.finfo(np.float64).eps)
    for name in ("mean", "std", "rms", "max_abs", "zero_fraction"):
        assert math.isnan(got[name]), name
    assert got["dead_channels"] == 3


def test_empty_activation():
    got = activation_statistics(activation_sums(torch.zeros(0, 5), 1))
    assert got["count"] == 0 and got["channels"] == 5
    assert math.isnan(got["mean"]) and math.isnan(got["non_finite_fraction"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_variance_far_from_zero_does_not_cancel(path, dtype):
    """mean/std = 1e4: Σx² − (Σx)²/n would lose every digit in float32; about a shift near the
    mean (where x − s is exact, by Sterbenz's lemma) the sums keep them."""
    x = _activations((64, 32, 8), dtype, seed=4, offset=1e4, scale=1.0)
    got = activation_statistics(activation_sums(x, 2))
    want = _reference(x, 2)
    assert got["std"] == pytest.approx(want["std"], rel=_tolerance(dtype, x.numel()))
    assert got["mean"] == pytest.approx(want["mean"], rel=_tolerance(dtype, x.numel()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_squares_do_not_overflow(path, dtype):
    """float16 tops out at 65504: values of 3e4 square to 9e8; the sums are float32."""
    x = _activations((32, 16), torch.float64, seed=5, scale=3e4).clamp(-6e4, 6e4).to(dtype)
    got = activation_statistics(activation_sums(x, 1))
    want = _reference(x, 1)
    assert math.isfinite(got["rms"]) and math.isfinite(got["std"])
    _check(got, want, dtype, x.numel())


def test_counts_exact_past_float32s_integers(path):
    """2^24 + 5 elements: float32 cannot count them one by one; the sums switch to float64."""
    n = 2**24 + 5
    x = torch.ones(n, 1)
    x[::3] = 0
    x[1] = float("nan")  # one non-finite value: a float32 count would round it away
    got = activation_statistics(activation_sums(x, 1))
    zeros = len(range(0, n, 3))
    assert got["count"] == n
    exact = 4 * np.finfo(np.float64).eps  # counts are exact: only the division rounds
    assert got["non_finite_fraction"] == pytest.approx(1 / n, rel=exact)
    assert got["zero_fraction"] == pytest.approx(zeros / (n - 1), rel=exact)
    assert got["mean"] == pytest.approx((n - 1 - zeros) / (n - 1), rel=exact)


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_of_two_halves_equals_the_whole(path, dtype):
    x = _activations((12, 7, 5, 5), dtype, seed=6, offset=3.0)
    x[:6, 2] = 0  # zero in the first half only: dead there, alive overall
    x[:, 5] = 0  # dead in both
    x[1, 0, 0, 0] = float("nan")
    bounds = (-1.0, 4.0)
    first = activation_sums(x[:5], 1, bounds)
    second = activation_sums(x[5:], 1, bounds)
    whole = activation_statistics(activation_sums(x, 1, bounds))
    merged = activation_statistics(first.merge(second))
    _check(merged, _reference(x, 1, bounds), dtype, x.numel())
    for name in whole:
        if math.isnan(whole[name]):
            assert math.isnan(merged[name])
        else:
            assert merged[name] == pytest.approx(whole[name], rel=_tolerance(dtype, x.numel()))
    assert merged["dead_channels"] == 1
    assert activation_statistics(first)["dead_channels"] == 2


def test_merge_with_an_all_non_finite_part():
    good = torch.randn(20, 3, dtype=torch.float64)
    bad = torch.full((5, 3), float("nan"), dtype=torch.float64)
    merged = activation_statistics(activation_sums(good, 1).merge(activation_sums(bad, 1)))
    want = _reference(torch.cat([good, bad]), 1)
    _check(merged, want, torch.float64, 25 * 3)


def test_merge_refuses_different_channel_counts():
    with pytest.raises(ValueError, match="3 and 4 channels"):
        activation_sums(torch.ones(2, 3), 1).merge(activation_sums(torch.ones(2, 4), 1))


def test_activation_table_rows_and_columns():
    xs = [_activations((8, 4), torch.float32, seed=i) for i in range(3)]
    xs[1][:, 0] = 0
    sums = [
        activation_sums(xs[0], 1),
        activation_sums(xs[1], 1, (-1.0, 1.0)),
        activation_sums(xs[2], None),
    ]
    table = activation_table(sums)
    assert table.values.shape == (3, len(ACTIVATION_STATISTICS))
    assert table.values.dtype == torch.float64
    assert table.counts.tolist() == [32, 32, 32]
    assert table.channels.tolist() == [4, 4, 1]
    assert table.dead_channels.tolist() == [0, 1, 0]
    for row, x in enumerate(xs):
        want = _reference(x, None if row == 2 else 1, (-1.0, 1.0) if row == 1 else None)
        got = dict(zip(ACTIVATION_STATISTICS, table.values[row].tolist()))
        got.update(
            count=32.0,
            channels=float(table.channels[row]),
            dead_channels=float(table.dead_channels[row]),
        )
        _check(got, want, torch.float32, 32)
    assert STATISTICS[: len(ACTIVATION_STATISTICS)] == ACTIVATION_STATISTICS
    assert STATISTICS[len(ACTIVATION_STATISTICS) :] == (
        "effective_dimension",
        "saturation",
        "effective_rank",
    )


def test_activation_table_needs_rows():
    with pytest.raises(ValueError, match="at least one row"):
        activation_table([])


@pytest.mark.parametrize(
    "x,channel_dim,message",
    [
        (torch.ones(3, 4, dtype=torch.int64), 1, "floating-point"),
        (torch.ones(3, 4), 2, "out of range"),
        (torch.ones(3, 4), -3, "out of range"),
    ],
)
def test_bad_input_says_what_to_do(x, channel_dim, message):
    with pytest.raises(ValueError, match=message):
        activation_sums(x, channel_dim)


def test_sums_never_keep_the_graph_and_leave_the_input_alone(path):
    x = torch.randn(4, 3, requires_grad=True)
    before = x.detach().clone()
    y = x * 2
    sums = activation_sums(y, 1)
    assert not sums.total.requires_grad and not sums.m2.requires_grad
    assert torch.equal(y.detach(), before * 2)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


def test_negative_channel_dim_counts_from_the_end():
    x = _activations((4, 5, 6), torch.float64, seed=7)
    x[:, :, 2] = 0
    _check(
        activation_statistics(activation_sums(x, -1)), _reference(x, 2), torch.float64, x.numel()
    )
    assert activation_statistics(activation_sums(x, -1))["dead_channels"] == 1


def test_channels_last_layout_gives_the_same_statistics(path):
    x = _activations((4, 6, 5, 5), torch.float32, seed=8)
    x[:, 3] = 0
    last = x.to(memory_format=torch.channels_last)
    assert not last.is_contiguous()
    _check(
        activation_statistics(activation_sums(last, 1)), _reference(x, 1), torch.float32, x.numel()
    )


# ---------------------------------------------------------------------------- parameters


def _np_norm(t) -> float:
    return float(np.linalg.norm(t.detach().to(torch.float64).numpy().reshape(-1)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_parameter_norms_match_numpy(dtype):
    generator = torch.Generator().manual_seed(9)
    params = [
        torch.randn(shape, generator=generator).to(dtype)
        for shape in [(3, 4), (5,), (2, 3, 3, 3), ()]
    ]
    grads = [torch.randn(p.shape, generator=generator).to(dtype) for p in params]
    grads[1] = None
    grad_norms, weight_norms = parameter_norms(params, grads)
    assert grad_norms.dtype == weight_norms.dtype == torch.float32
    rel = 16 * torch.finfo(_accumulator(dtype)).eps * math.sqrt(54)
    for i, (p, g) in enumerate(zip(params, grads)):
        assert float(weight_norms[i]) == pytest.approx(
            _np_norm(p), rel=max(rel, 2 * torch.finfo(torch.float32).eps)
        )
        if g is None:
            assert math.isnan(float(grad_norms[i]))
        else:
            assert float(grad_norms[i]) == pytest.approx(
                _np_norm(g), rel=max(rel, 2 * torch.finfo(torch.float32).eps)
            )


def test_parameter_norms_default_to_each_grad():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    model(torch.randn(5, 3)).sum().backward()
    params = list(model.parameters())
    grad_norms, weight_norms = parameter_norms(params)
    for i, p in enumerate(params):
        assert float(weight_norms[i]) == pytest.approx(_np_norm(p), rel=1e-6)
        if p.grad is None:
            assert math.isnan(float(grad_norms[i]))
        else:
            assert float(grad_norms[i]) == pytest.approx(_np_norm(p.grad), rel=1e-6)
    assert math.isnan(float(grad_norms[3]))


def test_parameter_table_columns():
    params = [torch.tensor([3.0, 4.0]), torch.zeros(2), torch.ones(4)]
    grads = [torch.tensor([0.0, 0.5]), torch.ones(2), None]
    table = parameter_table(params, grads)
    assert PARAMETER_STATISTICS == ("grad_norm", "weight_norm", "grad_to_weight")
    assert table.shape == (3, 3) and table.dtype == torch.float32
    assert table[0].tolist() == pytest.approx([0.5, 5.0, 0.1])
    assert table[1, 1] == 0 and math.isinf(float(table[1, 2]))  # a zero weight: inf, not an error
    assert math.isnan(float(table[2, 0])) and math.isnan(float(table[2, 2]))


def test_half_gradient_norm_does_not_overflow():
    g = torch.full((100,), 60000.0, dtype=torch.float16)
    grad_norms, _ = parameter_norms([torch.ones(100, dtype=torch.float16)], [g])
    assert float(grad_norms[0]) == pytest.approx(600000.0, rel=1e-6)


def test_sparse_gradient_norm():
    g = torch.sparse_coo_tensor([[0, 2, 2]], [3.0, 2.0, 2.0], (5,), check_invariants=True)
    grad_norms, _ = parameter_norms([torch.ones(5)], [g])
    assert float(grad_norms[0]) == pytest.approx(5.0)


def test_parameter_norms_of_nothing_and_mismatched_lengths():
    grad_norms, weight_norms = parameter_norms([], [])
    assert grad_norms.shape == weight_norms.shape == (0,)
    with pytest.raises(ValueError, match="2 parameters but 1 gradients"):
        parameter_norms([torch.ones(1), torch.ones(1)], [None])


# ---------------------------------------------------------------------------- no host reads


def test_nothing_reads_a_value_off_the_cpu():
    """On the meta device any read of a value (.item(), bool(), .tolist()) raises, as a stand-in
    for an accelerator where it would wait for the stream: every function runs there."""
    with pytest.raises(RuntimeError, match="meta"):
        bool(torch.empty((), device="meta") > 0)
    meta = {"device": "meta"}
    sums = [
        activation_sums(torch.empty(4, 3, 5, 5, **meta), 1, (-1.0, 1.0)),
        activation_sums(torch.empty(6, 7, dtype=torch.float16, **meta), 1),
        activation_sums(torch.empty(5, **meta), None),
    ]
    merged = sums[0].merge(sums[0])
    table = activation_table([*sums, merged])
    assert table.values.shape == (4, len(ACTIVATION_STATISTICS)) and table.values.is_meta
    assert table.dead_channels.shape == table.channels.shape == table.counts.shape == (4,)
    params = [torch.empty(3, **meta), torch.empty(2, 2, dtype=torch.bfloat16, **meta)]
    assert parameter_table(
        params, [None, torch.empty(2, 2, dtype=torch.bfloat16, **meta)]
    ).shape == (2, 3)
