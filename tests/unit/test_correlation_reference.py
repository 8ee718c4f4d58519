"""The numpy reference of the correlation tests (tests/correlation_data.py): dead by dtype."""

from __future__ import annotations

import numpy as np
import pytest

from tests.correlation_data import dead_channels, numpy_correlation


def _activations(dtype, constant: float, samples: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((samples, 4))
    a[:, 3] = a[:, 0] * 0.6 + a[:, 3] * 0.8
    a = a.astype(dtype)
    a[:, 2] = dtype(constant)
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("constant", [0.1, 3.7, -1.0 / 3.0])
def test_a_constant_channel_is_dead_and_its_correlations_zero(dtype, constant):
    a = _activations(dtype, constant)
    # numpy's own std of the channel need not be 0: what a `== 0` test got wrong
    assert list(np.flatnonzero(dead_channels(a))) == [2]
    matrix = numpy_correlation(a)
    assert not matrix[2].any() and not matrix[:, 2].any()
    alive = [0, 1, 3]
    ref = np.corrcoef(a[:, alive].astype(np.float64), rowvar=False)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(matrix[np.ix_(alive, alive)], ref, rtol=0, atol=64 * eps)


def test_float64_constant_whose_numpy_std_is_not_zero():
    a = _activations(np.float64, 0.1) * 1.7  # 0.17 in float64: its std is ~3e-17
    assert a[:, 2].std() > 0  # the case a `std == 0` test misjudged
    matrix = numpy_correlation(a)
    assert not matrix[2].any() and not matrix[:, 2].any()


def test_a_channel_with_small_real_variance_is_alive():
    rng = np.random.default_rng(1)
    a = np.stack([1000 + 0.005 * rng.standard_normal(2000), rng.standard_normal(2000)], axis=1)
    a = a.astype(np.float32)
    assert not dead_channels(a).any()
    wide = a.astype(np.float64)
    np.testing.assert_allclose(
        numpy_correlation(a), np.corrcoef(wide, rowvar=False), rtol=0, atol=1e-12
    )
