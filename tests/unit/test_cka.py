"""deepscope.analysis.cka: linear CKA from co-moments and from per-sample Gram matrices.

Reference: a direct implementation on the activations (numpy, float64): HSIC with the
centring matrix H = I − 11ᵀ/n, CKA = tr(KHLH) / sqrt(tr(KHKH)·tr(LHLH)), K = XXᵀ,
L = YYᵀ; and its invariances (1 against itself, orthogonal transforms, isotropic
scaling, shifts).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.analysis import cka
from deepscope.analysis.correlation import CorrelationAccumulator

F64 = float(np.finfo(np.float64).eps)


def direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s linear CKA by its definition, on [n, p] and [n, q]."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = np.trace(k @ h @ l_ @ h)
    return hsic / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l_ @ h @ l_ @ h))


def _pair(seed=0, n=300, p=12, q=9):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) @ rng.standard_normal((p, p))
    y = np.tanh(x[:, :q] @ rng.standard_normal((q, q))) + 0.3 * rng.standard_normal((n, q))
    return x, y


def test_cka_from_the_accumulators_comoments_is_the_direct_cka():
    x, y = _pair()
    acc = CorrelationAccumulator(channel_dim=1, other_channel_dim=1)
    for chunk in np.array_split(np.arange(len(x)), 4):
        acc.update(torch.from_numpy(x[chunk]), torch.from_numpy(y[chunk]))
    within_x, within_y, cross = acc.comoments()
    got = cka.cka_from_comoments(cross, within_x, within_y)
    assert got == pytest.approx(direct_cka(x, y), rel=1e-10)
    # The co-moments themselves: numpy's about the means.
    xc, yc = x - x.mean(0), y - y.mean(0)
    np.testing.assert_allclose(cross, xc.T @ yc, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(within_x, xc.T @ xc, rtol=1e-10, atol=1e-9)


def test_invariances_and_range():
    x, y = _pair(seed=1)
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))

    def from_activations(a, b):
        ac, bc = a - a.mean(0), b - b.mean(0)
        return cka.cka_from_comoments(ac.T @ bc, ac.T @ ac, bc.T @ bc)

    assert from_activations(x, x) == pytest.approx(1.0, abs=1e-12)
    assert from_activations(x, 3.5 * x @ q + 7.0) == pytest.approx(1.0, abs=1e-12)
    base = from_activations(x, y)
    assert 0.0 < base < 1.0
    assert from_activations(x @ q, 0.1 * y - 2.0) == pytest.approx(base, rel=1e-10)
    # Not invariant to an anisotropic scaling of the features (what sets CKA apart).
    scaled = x * np.linspace(0.1, 10.0, 12)
    assert abs(from_activations(scaled, y) - base) > 1e-3
    zero = np.zeros((12, 12))
    assert np.isnan(cka.cka_from_comoments(np.zeros((12, 9)), zero, np.eye(9)))
    with pytest.raises(ValueError, match="shapes"):
        cka.cka_from_comoments(np.zeros((12, 9)), np.eye(9), np.eye(9))


def test_layer_by_layer_matrix_from_grams_is_the_direct_cka():
    """Layers of different shapes on the same 40 probe samples (flattened per sample)."""
    rng = np.random.default_rng(2)
    n = 40
    base = rng.standard_normal((n, 3, 5, 5))
    layers_a = [base, np.maximum(base[:, :2] * 2.0 - 0.5, 0), rng.standard_normal((n, 17))]
    layers_b = [base.reshape(n, -1) @ rng.standard_normal((75, 30)), base[:, :, ::2, ::2]]
    grams_a = [cka.centered_gram(torch.from_numpy(a)) for a in layers_a]
    grams_b = [cka.centered_gram(torch.from_numpy(b)) for b in layers_b]
    got = cka.cka_matrix(grams_a, grams_b)
    assert got.shape == (3, 2)
    for i, a in enumerate(layers_a):
        for j, b in enumerate(layers_b):
            want = direct_cka(a.reshape(n, -1), b.reshape(n, -1))
            assert got[i, j] == pytest.approx(want, rel=1e-10, abs=64 * F64)
    # The same network against itself: 1 on the diagonal.
    itself = cka.cka_matrix(grams_a, grams_a)
    np.testing.assert_allclose(np.diagonal(itself), 1.0, atol=1e-12)
    constant = cka.centered_gram(torch.ones(n, 4))
    assert np.isnan(cka.cka_matrix([constant], grams_b)).all()
    with pytest.raises(ValueError, match="same 40 samples"):
        cka.cka_matrix(grams_a, [cka.centered_gram(torch.randn(30, 4))])
    with pytest.raises(ValueError, match="at least one feature"):
        cka.centered_gram(torch.randn(10))
