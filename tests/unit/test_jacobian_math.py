"""`jacobian_singular_values` against independent references.

References: `torch.autograd.functional.jacobian` (the explicit Jacobian, one sample at a
time) and `numpy.linalg.svd` in float64; closed forms (an orthogonal linear layer has all
singular values 1 and log|det| 0; a ReLU's Jacobian at x is diag(x > 0), so its singular
values are the active mask sorted); the exact ‖J‖_F² and log|det| of the explicit Jacobian
for the estimates (Hutchinson, stochastic Lanczos quadrature), checked against their
spread over seeds. Tolerances derive from float32's epsilon (the products run in float32)
times the problem's size; Lanczos' own stopping tolerance where it stops early.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepscope.analysis.jacobian import JacobianSummary, jacobian_singular_values

EPS32 = float(np.finfo(np.float32).eps)


def _explicit(fn, x: torch.Tensor) -> np.ndarray:
    """float64 [S, m, n]: each sample's Jacobian, by torch.autograd.functional.jacobian."""
    found = []
    for sample in x:
        jac = torch.autograd.functional.jacobian(lambda z: fn(z[None])[0], sample)
        out_numel = math.prod(jac.shape[: jac.dim() - sample.dim()])
        found.append(jac.reshape(out_numel, sample.numel()).double().numpy())
    return np.stack(found)


def _svd(matrices: np.ndarray) -> np.ndarray:
    return np.linalg.svd(matrices, compute_uv=False)


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 20), torch.nn.Tanh(), torch.nn.Linear(20, 12), torch.nn.GELU()
    )


def _cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 5),
    )
    with torch.no_grad():  # running statistics that are not the defaults
        net.train()
        for _ in range(3):
            net(torch.randn(16, 2, 6, 6) * 2 + 0.5)
    return net


def test_mlp_full_spectrum_matches_autograd_and_numpy():
    net = _mlp()
    x = torch.randn(4, 12)
    result = jacobian_singular_values(net, x)
    jac = _explicit(net, x)
    want = _svd(jac)
    assert result.full and result.singular_values.shape == (4, 12)
    assert (result.input_dim, result.output_dim) == (12, 12)
    scale = float(want.max())
    np.testing.assert_allclose(result.singular_values, want, rtol=0, atol=64 * EPS32 * scale)
    fro = (jac**2).sum(axis=(1, 2)) / 12
    np.testing.assert_allclose(result.mean_squared, fro, rtol=64 * EPS32)
    logdet = np.linalg.slogdet(jac)[1]
    np.testing.assert_allclose(result.log_abs_det, logdet, rtol=0, atol=1e-3)
    assert result.mean_squared_probes == 0


def test_cnn_with_batch_norm_in_eval_mode_matches_autograd_and_state_is_restored():
    net = _cnn()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 2, 6, 6)
    result = jacobian_singular_values(net, x)
    assert net.training and all(m.training for m in net.modules())
    after = net.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key  # running stats and weights untouched
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    want = _svd(_explicit(net, x))  # eval mode: batch norm on its running statistics
    assert result.full and result.singular_values.shape == want.shape == (3, 5)
    np.testing.assert_allclose(
        result.singular_values, want, rtol=0, atol=256 * EPS32 * float(want.max())
    )
    assert np.all(np.isnan(result.log_abs_det))  # 72 → 5: not square


def test_cnn_top_k_by_block_lanczos_matches_the_full_spectrum():
    net = _cnn(1)
    x = torch.randn(2, 2, 6, 6)
    result = jacobian_singular_values(net, x, k=3, full_max=2, tol=1e-7)
    net.eval()
    want = _svd(_explicit(net, x))[:, :3]
    assert not result.full and result.singular_values.shape == (2, 3)
    np.testing.assert_allclose(result.singular_values, want, rtol=1e-4)


@pytest.mark.parametrize("full_max", [256, 4], ids=["full", "lanczos"])
def test_an_orthogonal_linear_layer_has_all_singular_values_one(full_max):
    torch.manual_seed(3)
    layer = torch.nn.Linear(48, 48, bias=True)
    torch.nn.init.orthogonal_(layer.weight)
    x = torch.randn(3, 48)
    result = jacobian_singular_values(layer, x, k=6, full_max=full_max)
    kept = result.singular_values
    np.testing.assert_allclose(kept, np.ones_like(kept), rtol=0, atol=64 * EPS32)
    if result.full:
        np.testing.assert_allclose(result.mean_squared, np.ones(3), rtol=0, atol=64 * EPS32 * 48)
    else:
        # Hutchinson on the rest of the space (A = I there, rank r <= 48): each probe's
        # variance is at most 2r, so 4 standard errors of the mean of 16 probes, over 48.
        bound = 4 * math.sqrt(2 * 48 / result.mean_squared_probes) / 48
        assert np.all(np.abs(result.mean_squared - 1) <= bound), result.mean_squared
    # Exact (full) or a quadrature estimate of log 1 = 0 on every probe: 0 up to rounding.
    np.testing.assert_allclose(result.log_abs_det, np.zeros(3), rtol=0, atol=1e-3)


@pytest.mark.parametrize("full_max", [256, 4], ids=["full", "lanczos"])
def test_a_relu_layer_has_the_active_mask_as_singular_values(full_max):
    torch.manual_seed(4)
    x = torch.randn(3, 40)
    result = jacobian_singular_values(torch.nn.ReLU(), x, k=5, full_max=full_max)
    for sample, row in zip(x, result.singular_values):
        mask = np.sort((sample > 0).double().numpy())[::-1]
        np.testing.assert_allclose(row, mask[: row.size], rtol=0, atol=16 * EPS32)
    active = (x > 0).double().mean(dim=1).numpy()
    if full_max == 256:
        np.testing.assert_allclose(result.mean_squared, active, rtol=16 * EPS32)
        assert np.all(result.log_abs_det == -np.inf)  # a zero singular value: det 0


def test_mid_size_lanczos_top_k_matches_numpy_svd():
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(300, 350), torch.nn.Tanh(), torch.nn.Linear(350, 200))
    x = torch.randn(2, 300)
    result = jacobian_singular_values(net, x, k=8, full_max=16, tol=1e-7, max_iterations=200)
    want = _svd(_explicit(net, x))
    assert not result.full
    np.testing.assert_allclose(result.singular_values, want[:, :8], rtol=1e-4)


def test_a_restarted_lanczos_still_finds_the_top_values():
    torch.manual_seed(6)
    weight = torch.randn(400, 400) / 20
    layer = torch.nn.Linear(400, 400, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    x = torch.randn(1, 400)
    # max_iterations large, the basis capped: a flat random spectrum needs restarts.
    result = jacobian_singular_values(layer, x, k=4, full_max=8, tol=1e-8, max_iterations=400)
    want = _svd(weight.double().numpy()[None])[:, :4]
    np.testing.assert_allclose(result.singular_values, want, rtol=1e-3)


def test_mean_squared_estimate_is_unbiased_within_its_spread():
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(120, 160), torch.nn.Tanh(), torch.nn.Linear(160, 90))
    x = torch.randn(1, 120)
    exact = float((_explicit(net, x) ** 2).sum() / 90)
    # Two Lanczos blocks only: the estimate's remainder is most of the space.
    estimates = np.array(
        [
            jacobian_singular_values(
                net, x, k=2, full_max=4, probes=8, seed=seed, max_iterations=2
            ).mean_squared[0]
            for seed in range(12)
        ]
    )
    spread = estimates.std(ddof=1) / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) <= 4 * spread + 1e-4 * exact, (estimates, exact)
    assert np.all(np.abs(estimates - exact) <= 0.25 * exact)  # each a usable estimate


def test_log_det_estimate_of_a_square_map_is_near_the_exact_value():
    torch.manual_seed(8)
    layer = torch.nn.Linear(160, 160, bias=False)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(160, 160))
        scales = torch.linspace(0.5, 2.0, 160)
        layer.weight.copy_(q * scales)  # singular values 0.5 … 2: log|det| = Σ log s
    x = torch.randn(1, 160)
    exact = float(torch.log(scales.double()).sum())
    estimates = np.array(
        [
            jacobian_singular_values(
                layer, x, k=2, full_max=4, probes=16, seed=s, max_iterations=2
            ).log_abs_det[0]
            for s in range(6)
        ]
    )
    spread = max(estimates.std(ddof=1) / math.sqrt(len(estimates)), 1e-6)
    assert abs(estimates.mean() - exact) <= 4 * spread + 0.02 * abs(exact) + 0.05, (
        estimates,
        exact,
    )


def test_a_layer_within_a_network_is_measured_at_the_input_it_sees():
    torch.manual_seed(9)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    x = torch.randn(5, 10)
    relu = jacobian_singular_values(net[1], x, within=net)
    hidden = net[0](x).detach()
    for sample, row in zip(hidden, relu.singular_values):
        np.testing.assert_allclose(row, np.sort((sample > 0).double().numpy())[::-1], atol=0)
    last = jacobian_singular_values(net[2], x, within=net)
    want = _svd(net[2].weight.detach().double().numpy()[None])
    np.testing.assert_allclose(
        last.singular_values, np.repeat(want, 5, axis=0), rtol=0, atol=16 * EPS32 * want.max()
    )


class _Outputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        return {"hidden": x, "logits": self.fc(x)}


def test_the_output_rule_takes_logits_and_a_named_output():
    torch.manual_seed(10)
    model = _Outputs()
    x = torch.randn(2, 6)
    found = jacobian_singular_values(model, x)
    want = _svd(model.fc.weight.detach().double().numpy()[None])
    np.testing.assert_allclose(found.singular_values[0], want[0], atol=16 * EPS32 * want.max())
    identity = jacobian_singular_values(model, x, output="hidden")
    np.testing.assert_allclose(identity.singular_values, np.ones((2, 6)), atol=16 * EPS32)


def test_summary_is_the_mean_and_population_spread_over_samples():
    net = _mlp(2)
    result = jacobian_singular_values(net, torch.randn(5, 12))
    summary = result.summary()
    assert isinstance(summary, JacobianSummary)
    top = result.singular_values[:, 0]
    assert math.isclose(summary.sigma_max_mean, float(np.mean(top)), rel_tol=1e-12)
    assert math.isclose(summary.sigma_max_std, float(np.std(top)), rel_tol=1e-12)
    assert math.isclose(summary.log_abs_det_mean, float(np.mean(result.log_abs_det)), rel_tol=1e-12)


def test_bad_input_says_what_to_do():
    net = _mlp()
    with pytest.raises(TypeError, match="floating-point tensor"):
        jacobian_singular_values(net, torch.ones(2, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="k must be a positive int"):
        jacobian_singular_values(net, torch.randn(2, 12), k=0)
    with pytest.raises(ValueError, match="first dim must be the samples"):
        jacobian_singular_values(lambda x: x.sum(dim=0), torch.randn(3, 4))
    other = torch.nn.Linear(3, 3)
    with pytest.raises(RuntimeError, match="did not run"):
        jacobian_singular_values(other, torch.randn(2, 12), within=net)
    relu = torch.nn.ReLU()
    twice = torch.nn.Sequential(torch.nn.Linear(12, 12), relu, torch.nn.Linear(12, 12), relu)
    with pytest.raises(RuntimeError, match="runs 2 times"):
        jacobian_singular_values(relu, torch.randn(2, 12), within=twice)


class _SquareNoJvp(torch.autograd.Function):
    """x², with a backward but no forward-AD rule (jvp)."""

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class _NoForwardAD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(30, 20)

    def forward(self, x):
        return self.fc(_SquareNoJvp.apply(x))


def test_a_map_without_forward_ad_is_measured_by_two_vjps():
    torch.manual_seed(11)
    model = _NoForwardAD()
    x = torch.randn(2, 30)
    with pytest.raises(NotImplementedError):
        torch.func.jvp(model, (x,), (x,))
    want = _svd(_explicit(model, x))
    top = jacobian_singular_values(model, x, k=4, full_max=2, tol=1e-7, max_iterations=100)
    np.testing.assert_allclose(top.singular_values, want[:, :4], rtol=1e-4)
    full = jacobian_singular_values(model, x)  # 20 output basis vectors: vjps only
    np.testing.assert_allclose(full.singular_values, want, rtol=0, atol=64 * EPS32 * want.max())


def test_products_count_each_jvp_and_vjp_per_sample():
    net = _mlp(3)  # 12 → 12: the whole spectrum from 12 basis vectors
    result = jacobian_singular_values(net, torch.randn(5, 12))
    assert result.full and result.products == 12


def test_log_det_false_skips_the_quadrature_of_a_large_square_map():
    torch.manual_seed(12)
    layer = torch.nn.Linear(40, 40)
    x = torch.randn(2, 40)
    with_det = jacobian_singular_values(layer, x, k=3, full_max=4)
    without = jacobian_singular_values(layer, x, k=3, full_max=4, log_det=False)
    assert np.all(np.isfinite(with_det.log_abs_det)) and with_det.log_det_probes == 16
    assert np.all(np.isnan(without.log_abs_det)) and without.log_det_probes == 0
    assert without.products < with_det.products
    np.testing.assert_array_equal(without.singular_values, with_det.singular_values)
    exact = jacobian_singular_values(layer, x, log_det=False)  # whole spectrum: exact anyway
    want = np.linalg.slogdet(layer.weight.detach().double().numpy())[1]
    np.testing.assert_allclose(exact.log_abs_det, [want, want], rtol=0, atol=1e-3)
