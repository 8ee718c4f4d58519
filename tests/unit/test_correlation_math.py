"""CorrelationAccumulator against numpy: Pearson matrices, statistics, streaming, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.analysis import correlation
from deepscope.analysis.correlation import CorrelationAccumulator


def _samples(x: torch.Tensor, channel_dim: int) -> np.ndarray:
    """(samples, C) float64 numpy: every position of the other dimensions is a sample."""
    return x.movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim]).double().numpy()


def _correlated(n: int, c: int, seed: int = 0) -> torch.Tensor:
    """(n, c) float32 with real correlations between channels and nonzero means."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g, dtype=torch.float64)
    x = torch.randn(n, c, generator=g, dtype=torch.float64) @ mix
    return (x + torch.arange(c, dtype=torch.float64)).float()


def test_within_layer_matches_numpy_corrcoef_and_statistics():
    x = _correlated(500, 7)
    acc = CorrelationAccumulator()
    acc.update(x)
    result = acc.compute()
    ref = x.double().numpy()
    np.testing.assert_allclose(result.matrix, np.corrcoef(ref.T), atol=1e-6)
    np.testing.assert_allclose(result.rows.mean, ref.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.rows.std, ref.std(0), rtol=1e-6)
    np.testing.assert_allclose(result.rows.positive_fraction, (ref > 0).mean(0))
    assert result.samples == 500 and not result.cross and result.cols is None
    assert result.within_rows is result.matrix
    assert not result.rows.dead.any() and result.rows.non_finite == 0


def test_spatial_positions_are_samples_in_any_memory_layout():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 4, 3, generator=g)
    x[:, 1] += 0.5 * x[:, 0]
    ref = np.corrcoef(_samples(x, 1).T)
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        acc = CorrelationAccumulator(channel_dim=1)
        acc.update(layout)
        result = acc.compute()
        assert result.samples == 6 * 4 * 3
        np.testing.assert_allclose(result.matrix, ref, atol=1e-6)


@pytest.mark.parametrize(
    "shape, channel_dim",
    [((5, 40), 0), ((8, 6, 5), -1), ((8, 6, 5), 2), ((4, 3, 5, 6), 2), ((4, 5, 3), -2)],
)
def test_channel_dim_variants(shape, channel_dim):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    acc = CorrelationAccumulator(channel_dim=channel_dim)
    acc.update(x)
    ref = _samples(x, channel_dim)
    result = acc.compute()
    assert result.matrix.shape == (shape[channel_dim],) * 2
    np.testing.assert_allclose(result.matrix, np.corrcoef(ref.T), atol=1e-6)
    np.testing.assert_allclose(result.rows.mean, ref.mean(0), atol=1e-6)


def test_streaming_over_many_batches_and_merge_equal_one_shot():
    x = _correlated(1000, 6, seed=3)
    y = _correlated(1000, 4, seed=4) + 0.3 * x[:, :4]
    ref = np.corrcoef(x.double().numpy().T, y.double().numpy().T)
    sizes = [1, 7, 100, 2, 300, 90, 500]
    streamed = CorrelationAccumulator()
    first, second = CorrelationAccumulator(), CorrelationAccumulator()
    start = 0
    for k, size in enumerate(sizes):
        xb, yb = x[start : start + size], y[start : start + size]
        streamed.update(xb, yb)
        (first if k < 3 else second).update(xb, yb)
        start += size
    assert start == 1000
    merged = CorrelationAccumulator().merge(first).merge(second)
    for acc in (streamed, merged):
        result = acc.compute()
        assert result.samples == 1000 and result.cross
        np.testing.assert_allclose(result.matrix, ref[:6, 6:], atol=1e-6)
        np.testing.assert_allclose(result.within_rows, ref[:6, :6], atol=1e-6)
        np.testing.assert_allclose(result.within_cols, ref[6:, 6:], atol=1e-6)
        np.testing.assert_allclose(result.cols.mean, y.double().numpy().mean(0), atol=1e-5)
    # merge leaves its argument as it was
    assert first.samples == 108
    before = np.corrcoef(x[:108].double().numpy().T, y[:108].double().numpy().T)[:6, 6:]
    np.testing.assert_allclose(first.compute().matrix, before, atol=1e-6)


def test_large_offset_keeps_precision_in_float32():
    """Means 1e4 times the spread: centring per batch keeps float32 exact enough."""
    x = _correlated(4000, 5, seed=5) + 1e4
    acc = CorrelationAccumulator()
    for batch in x.split(512):
        acc.update(batch)
    np.testing.assert_allclose(acc.compute().matrix, np.corrcoef(x.double().numpy().T), atol=2e-4)


def test_half_precision_and_float64_inputs():
    x = _correlated(2000, 4, seed=6)
    ref = np.corrcoef(x.double().numpy().T)
    for dtype, atol in ((torch.float16, 5e-3), (torch.bfloat16, 3e-2), (torch.float64, 1e-12)):
        acc = CorrelationAccumulator()
        acc.update(x.to(dtype))
        low = x.to(dtype).double().numpy()  # the values as the accumulator saw them
        np.testing.assert_allclose(acc.compute().matrix, np.corrcoef(low.T), atol=atol)
        np.testing.assert_allclose(acc.compute().matrix, ref, atol=max(atol, 1e-2))


def test_dead_channels_are_marked_and_their_correlations_are_zero():
    x = _correlated(300, 5, seed=7).double()
    x[:, 1] = 0.0  # a dead ReLU
    x[:, 3] = 3.7  # constant, not zero
    acc = CorrelationAccumulator()
    for batch in x.float().split(64):
        acc.update(batch)
    result = acc.compute()
    assert list(result.rows.dead_indices) == [1, 3]
    assert np.isfinite(result.matrix).all()
    for channel in (1, 3):
        assert not result.matrix[channel].any() and not result.matrix[:, channel].any()
        assert result.rows.std[channel] == 0.0
    alive = [0, 2, 4]
    ref = np.corrcoef(x[:, alive].numpy().T)
    np.testing.assert_allclose(result.matrix[np.ix_(alive, alive)], ref, atol=1e-6)
    np.testing.assert_allclose(result.rows.mean[3], 3.7, rtol=1e-6)
    np.testing.assert_allclose(
        result.rows.positive_fraction[[1, 3]], [0.0, 1.0], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", ["nc", "nchw", "channels_last", "with_nan"])
def test_a_constant_nonzero_channel_is_dead_in_every_dtype_layout_and_path(dtype, layout):
    g = torch.Generator().manual_seed(21)
    acc = CorrelationAccumulator()
    for b in range(3):  # several batches: sums carried about the first batch's shift
        x = torch.randn(5 + b, 4, 3, 7, generator=g) if layout != "nc" else torch.randn(333 + b, 4)
        x[:, 2] = 0.1
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        if layout == "with_nan" and b == 1:  # the masked path, each batch about its own mean
            x[0, 0, 0, 0] = float("nan")
        acc.update(x.to(dtype))
    result = acc.compute()
    assert list(result.rows.dead_indices) == [2]
    assert not result.matrix[2].any() and not result.matrix[:, 2].any()


def test_dead_rule_is_relative_to_the_dtypes_resolution():
    eps32 = float(torch.finfo(torch.float32).eps)
    assert correlation.dead_rtol(torch.float32) == pytest.approx(eps32 / 8, rel=1e-12)
    assert correlation.dead_rtol(torch.float16) > correlation.dead_rtol(torch.float32)
    # 1000 ± 0.005 in float32: ~40 units in the last place of real spread, not dead
    g = torch.Generator().manual_seed(22)
    z = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    x = torch.stack([1000 + 0.005 * z[:, 0], 1000 + 0.005 * (0.6 * z[:, 0] + 0.8 * z[:, 1])], 1)
    x = x.float()
    acc = CorrelationAccumulator()
    for batch in x.split(1000):
        acc.update(batch)
    result = acc.compute()
    assert not result.rows.dead.any()
    ref = np.corrcoef(x.double().numpy().T)  # of the float32 values the accumulator saw
    np.testing.assert_allclose(result.matrix, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.rows.std, x.double().numpy().std(0), rtol=1e-4)


def test_dead_channel_against_another_network():
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(8))
    y = torch.stack([x[:, 0], torch.zeros(200)], dim=1)
    acc = CorrelationAccumulator()
    acc.update(x, y)
    result = acc.compute()
    assert list(result.cols.dead_indices) == [1] and not result.rows.dead.any()
    assert result.matrix[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert not result.matrix[:, 1].any()


def test_non_finite_sample_positions_are_left_out_and_counted():
    x = _correlated(100, 4, seed=9)
    y = _correlated(100, 3, seed=10)
    x[5, 2] = float("nan")
    x[17, 0] = float("inf")
    x[17, 1] = float("-inf")
    y[40, 1] = float("nan")
    keep = np.setdiff1d(np.arange(100), [5, 17, 40])
    acc = CorrelationAccumulator()
    acc.update(x[:50], y[:50])
    acc.update(x[50:], y[50:])
    result = acc.compute()
    assert result.samples == 97
    assert result.rows.non_finite == 3 and result.cols.non_finite == 1
    xs, ys = x.double().numpy()[keep], y.double().numpy()[keep]
    ref = np.corrcoef(xs.T, ys.T)
    np.testing.assert_allclose(result.matrix, ref[:4, 4:], atol=1e-6)
    np.testing.assert_allclose(result.within_rows, ref[:4, :4], atol=1e-6)
    np.testing.assert_allclose(result.rows.mean, xs.mean(0), atol=1e-5)
    np.testing.assert_allclose(result.rows.positive_fraction, (xs > 0).mean(0))


def test_nan_in_a_spatial_position_drops_that_position_only():
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(11))
    x[1, 0, 2, 3] = float("nan")
    acc = CorrelationAccumulator()
    acc.update(x)
    result = acc.compute()
    rows = _samples(x, 1)
    rows = rows[np.isfinite(rows).all(1)]
    assert result.samples == 3 * 16 - 1 == len(rows)
    np.testing.assert_allclose(result.matrix, np.corrcoef(rows.T), atol=1e-6)


def test_all_samples_non_finite_gives_zeros_not_nan():
    acc = CorrelationAccumulator()
    acc.update(torch.full((4, 3), float("nan")))
    result = acc.compute()
    assert result.samples == 0 and result.rows.non_finite == 12
    assert not result.matrix.any() and np.isfinite(result.matrix).all()


@pytest.mark.parametrize("masked_only", [False, True], ids=["cpu", "masked"])
def test_non_finite_is_not_dead_all_nan_channels_are_unknown(masked_only):
    """All-NaN activations: no finite sample, so mean/std are unknown (NaN), not 0, and
    no channel is dead (numpy reference: the statistics of an empty sample set are NaN)."""
    x = torch.full((8, 16), float("nan"))
    x[3, 5] = float("inf")
    acc = CorrelationAccumulator()
    acc._masked_only = masked_only
    acc.update(x)
    acc.update(torch.full((2, 16), float("nan")))
    result = acc.compute()
    reference = np.full((0, 16), np.nan)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected_mean = reference.mean(0)
    assert result.samples == 0 == len(reference)
    np.testing.assert_array_equal(np.isnan(result.rows.mean), np.isnan(expected_mean))
    assert np.isnan(result.rows.std).all() and np.isnan(result.rows.positive_fraction).all()
    assert not result.rows.dead.any() and len(result.rows.dead_indices) == 0
    assert result.rows.non_finite == 16 * 10
    assert not result.matrix.any()


@pytest.mark.parametrize("masked_only", [False, True], ids=["cpu", "masked"])
def test_partly_nan_activations_match_numpy_on_the_finite_positions(masked_only):
    x = _correlated(300, 6, seed=21)
    x[:, 4] = 2.5  # a constant channel: dead over the finite samples
    x[::7, 1] = float("nan")  # every 7th sample position is dropped
    x[10, 3] = float("-inf")
    acc = CorrelationAccumulator()
    acc._masked_only = masked_only
    acc.update(x[:150])
    acc.update(x[150:])
    result = acc.compute()
    rows = x.double().numpy()
    finite = rows[np.isfinite(rows).all(1)]
    eps = float(np.finfo(np.float32).eps)
    assert result.samples == len(finite) == 300 - 43 - 1
    assert result.rows.non_finite == 43 + 1
    np.testing.assert_allclose(result.rows.mean, finite.mean(0), rtol=64 * eps, atol=64 * eps)
    np.testing.assert_allclose(
        result.rows.std[result.rows.dead == 0], np.delete(finite.std(0), 4), rtol=64 * eps
    )
    np.testing.assert_allclose(result.rows.positive_fraction, (finite > 0).mean(0))
    assert list(result.rows.dead_indices) == [4]
    alive = [0, 1, 2, 3, 5]
    reference = np.corrcoef(finite[:, alive].T)
    np.testing.assert_allclose(result.matrix[np.ix_(alive, alive)], reference, atol=1e-5)
    assert not result.matrix[4].any() and not result.matrix[:, 4].any()


def test_overflowing_channels_get_zero_correlations_not_nan():
    x = _correlated(64, 3, seed=12)
    x[:, 2] *= 1e30  # finite, but its squares overflow float32
    acc = CorrelationAccumulator()
    acc.update(x)
    result = acc.compute()
    assert np.isfinite(result.matrix).all()
    assert list(np.flatnonzero(result.rows.overflow)) == [2]
    assert not result.matrix[2].any()
    ref = np.corrcoef(x[:, :2].double().numpy().T)
    np.testing.assert_allclose(result.matrix[:2, :2], ref, atol=1e-6)


def test_device_path_without_host_checks_matches_the_cpu_path():
    """The sync-free path (always masking, as on CUDA) gives the same moments as the CPU's."""
    x = _correlated(256, 5, seed=13).reshape(16, 16, 5).movedim(-1, 1)
    y = _correlated(256, 3, seed=14).reshape(16, 16, 3).movedim(-1, 1)
    results = []
    for masked_only in (False, True):
        acc = CorrelationAccumulator(channel_dim=1)
        acc._masked_only = masked_only
        acc.update(x, y)
        acc.update(x[:4] + 3.0, y[:4])  # a second batch: about the held shift, or its own mean
        results.append(acc.compute())
    fast, masked = results
    assert fast.samples == masked.samples == 256 + 64
    for a, b in ((fast.rows, masked.rows), (fast.cols, masked.cols)):
        for name in ("mean", "std", "positive_fraction"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-6)
        assert a.non_finite == b.non_finite == 0
    for name in ("matrix", "within_rows", "within_cols"):
        np.testing.assert_allclose(getattr(fast, name), getattr(masked, name), atol=1e-6)


@pytest.mark.parametrize(
    "values, message",
    [
        (torch.arange(12).reshape(3, 4), "floating point"),
        (torch.ones(3, 4, dtype=torch.bool), "floating point"),
        (torch.zeros(0, 4), "empty"),
        (torch.ones(5), "no sample dimension"),
        ([[1.0, 2.0]], "torch.Tensor"),
    ],
)
def test_bad_activations_raise_clear_errors(values, message):
    acc = CorrelationAccumulator()
    with pytest.raises((TypeError, ValueError), match=message):
        acc.update(values)
    assert acc.channels == ()


def test_wrong_channel_dim_and_mismatched_streams_raise():
    with pytest.raises(ValueError, match="channel_dim=3 is out of range"):
        CorrelationAccumulator(channel_dim=3).update(torch.ones(4, 2, 3))
    with pytest.raises(ValueError, match="same samples"):
        CorrelationAccumulator().update(torch.randn(8, 3), torch.randn(9, 3))
    with pytest.raises(ValueError, match="same samples"):
        CorrelationAccumulator().update(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 8))
    acc = CorrelationAccumulator()
    acc.update(torch.randn(8, 3))
    with pytest.raises(ValueError, match=r"holds \(3,\) channels, the batch has \(4,\)"):
        acc.update(torch.randn(8, 4))
    with pytest.raises(ValueError, match="one stream"):
        acc.update(torch.randn(8, 3), torch.randn(8, 3))
    cross = CorrelationAccumulator()
    cross.update(torch.randn(8, 3), torch.randn(8, 2))
    with pytest.raises(ValueError, match="different shapes"):
        acc.merge(cross)
    with pytest.raises(TypeError, match="channel_dim must be an int"):
        CorrelationAccumulator(channel_dim=1.0)
    with pytest.raises(ValueError, match="call update"):
        CorrelationAccumulator().compute()


def _check_against_numpy(result, reference: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(result.matrix, np.corrcoef(reference.T), atol=atol)
    np.testing.assert_allclose(result.rows.mean, reference.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.rows.positive_fraction, (reference > 0).mean(0))
    assert result.samples == reference.shape[0]


@pytest.mark.parametrize("layout", ["nchw", "rows-relu"])
def test_batches_larger_than_one_chunk_match_numpy(layout):
    g = torch.Generator().manual_seed(7)
    if layout == "nchw":  # 80 × 64 positions × 64 channels: several chunks, channels not innermost
        batches = [torch.randn(80, 64, 8, 8, generator=g) for _ in range(3)]
        for b in batches:
            b[:, 1] += 0.7 * b[:, 0]
        reference = np.concatenate([_samples(b, 1) for b in batches])
    else:  # post-ReLU (N, C): exact zeros, positives counted exactly
        batches = [torch.randn(10_000, 64, generator=g).relu() for _ in range(3)]
        reference = np.concatenate([b.double().numpy() for b in batches])
    acc = CorrelationAccumulator()
    for b in batches:
        acc.update(b)
    _check_against_numpy(acc.compute(), reference)


def test_batches_whose_mean_drifts_far_from_the_first_keep_precision():
    g = torch.Generator().manual_seed(8)
    batches = [
        torch.randn(300, 6, generator=g, dtype=torch.float64) + offset for offset in (0.0, 1e4, 3e4)
    ]
    acc = CorrelationAccumulator()
    for b in batches:
        acc.update(b)
    _check_against_numpy(acc.compute(), torch.cat(batches).numpy(), atol=1e-6)


def test_mixed_precision_batches_in_one_accumulator():
    x = _correlated(600, 5, seed=9)
    parts = [x[:200].double(), x[200:400], x[400:].half()]
    acc = CorrelationAccumulator()
    for part in parts:
        acc.update(part)
    reference = torch.cat([p.double() for p in parts]).numpy()  # as the accumulator saw them
    _check_against_numpy(acc.compute(), reference, atol=2e-3)


def test_merging_cross_accumulators_with_different_shifts_then_updating():
    g = torch.Generator().manual_seed(10)
    a = [torch.randn(200, 4, generator=g, dtype=torch.float64) + k * 50 for k in range(3)]
    b = [x @ torch.randn(4, 3, generator=g, dtype=torch.float64) - 7 for x in a]
    first, second = CorrelationAccumulator(), CorrelationAccumulator()
    first.update(a[0], b[0])
    second.update(a[1], b[1])  # another shift: its first batch's mean
    merged = first.merge(second)
    merged.update(a[2], b[2])
    result = merged.compute()
    xa, xb = torch.cat(a).numpy(), torch.cat(b).numpy()
    full = np.corrcoef(np.concatenate([xa, xb], axis=1).T)
    np.testing.assert_allclose(result.matrix, full[:4, 4:], atol=1e-9)
    np.testing.assert_allclose(result.within_cols, full[4:, 4:], atol=1e-9)
    assert result.cross and result.samples == 600
