"""Saliency methods against closed forms, hand computations and brute force.

References are numpy (float64) computations from the models' weights, or plain
autograd loops written here, never deepscope's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.analysis import saliency as sal
from deepscope.analysis.saliency.integrated_gradients import path_points
from deepscope.analysis.saliency.occlusion import window_starts


class Linear(torch.nn.Module):
    """f(x) = W · flatten(x) + c on [N, 1, 4, 5] inputs: ∇f_t = W[t] everywhere."""

    def __init__(self, classes=3, shape=(1, 4, 5), seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.shape = shape
        size = int(np.prod(shape))
        self.weight = torch.nn.Parameter(torch.tensor(rng.normal(size=(classes, size))))
        self.bias = torch.nn.Parameter(torch.tensor(rng.normal(size=classes)))

    def forward(self, x):
        return x.reshape(len(x), -1) @ self.weight.T + self.bias


class Quadratic(torch.nn.Module):
    """f_c(x) = ½ xᵀA_c x + w_c·x (A_c symmetric) on [N, D]: ∇f_c = A_c x + w_c."""

    def __init__(self, classes=3, size=6, seed=1):
        super().__init__()
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(classes, size, size))
        self.a = torch.nn.Parameter(torch.tensor((a + a.transpose(0, 2, 1)) / 2))
        self.w = torch.nn.Parameter(torch.tensor(rng.normal(size=(classes, size))))

    def forward(self, x):
        return 0.5 * torch.einsum("nd,cde,ne->nc", x, self.a, x) + x @ self.w.T


def _data(shape, seed=2, count=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, *shape))


# ---- gradient family, linear model


@pytest.fixture
def linear():
    model = Linear().double()
    x = _data(model.shape)
    weight = model.weight.detach().numpy()
    bias = model.bias.detach().numpy()
    predicted = np.argmax(x.reshape(len(x), -1) @ weight.T + bias, axis=1)
    return model, x, weight, predicted


def test_gradient_is_the_weight_row_of_the_predicted_class(linear):
    model, x, weight, predicted = linear
    result = sal.attribute(model, torch.tensor(x), method="gradient")
    np.testing.assert_array_equal(result.targets.numpy(), predicted)
    np.testing.assert_array_equal(result.predictions.numpy(), predicted)
    np.testing.assert_allclose(result.maps.numpy(), weight[predicted].reshape(x.shape), rtol=1e-12)


def test_given_targets_and_gradient_x_input(linear):
    model, x, weight, _ = linear
    target = np.array([2, 0, 1, 2])
    maps = sal.saliency(model, torch.tensor(x), target=torch.tensor(target), method="gradient")
    np.testing.assert_allclose(maps.numpy(), weight[target].reshape(x.shape), rtol=1e-12)
    maps = sal.saliency(model, torch.tensor(x), target=1, method="gradient_x_input")
    np.testing.assert_allclose(maps.numpy(), weight[[1] * 4].reshape(x.shape) * x, rtol=1e-12)


def test_smoothgrad_of_a_linear_model_is_its_gradient(linear):
    model, x, weight, predicted = linear
    maps = sal.saliency(
        model, torch.tensor(x), method="smoothgrad", n_samples=7, batch_size=5, noise_level=0.3
    )
    np.testing.assert_allclose(maps.numpy(), weight[predicted].reshape(x.shape), rtol=1e-12)


@pytest.mark.parametrize("rule", ["gauss_legendre", "trapezoid", "midpoint"])
def test_integrated_gradients_of_a_linear_model_is_difference_times_weight(linear, rule):
    model, x, weight, predicted = linear
    baseline = np.random.default_rng(3).normal(size=x.shape[1:])
    result = sal.attribute(
        model,
        torch.tensor(x),
        method="integrated_gradients",
        baseline=torch.tensor(baseline),
        n_steps=5,
        rule=rule,
        batch_size=3,  # 20 path rows in 7 passes, a partial one last
    )
    want = (x - baseline) * weight[predicted].reshape(x.shape)
    np.testing.assert_allclose(result.maps.numpy(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.completeness_error.numpy(), 0.0, atol=1e-10)
    np.testing.assert_array_equal(result.baseline.numpy(), baseline[None])  # shared: [1, ...]


def test_baseline_delta_of_a_linear_model_cancels(linear):
    model, x, weight, predicted = linear
    result = sal.attribute(model, torch.tensor(x), method="baseline_delta")
    np.testing.assert_allclose(result.maps.numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        result.baseline_maps.numpy(), weight[predicted].reshape(x.shape), rtol=1e-12
    )
    np.testing.assert_array_equal(result.baseline.numpy(), np.zeros((1, *x.shape[1:])))


# ---- quadratic model: non-constant gradient


@pytest.fixture
def quadratic():
    model = Quadratic().double()
    x = _data((6,), seed=4, count=5)
    a = model.a.detach().numpy()
    w = model.w.detach().numpy()
    scores = 0.5 * np.einsum("nd,cde,ne->nc", x, a, x) + x @ w.T
    return model, x, a, w, np.argmax(scores, axis=1)


def _grad(a, w, points, targets):
    return np.einsum("nde,ne->nd", a[targets], points) + w[targets]


@pytest.mark.parametrize("shared", [True, False])
def test_baseline_delta_of_a_quadratic_model(quadratic, shared):
    model, x, a, w, predicted = quadratic
    rng = np.random.default_rng(5)
    baseline = rng.normal(size=(6,)) if shared else rng.normal(size=x.shape)
    result = sal.attribute(
        model, torch.tensor(x), method="baseline_delta", baseline=torch.tensor(baseline)
    )
    base = np.broadcast_to(baseline, x.shape)
    want_base = _grad(a, w, base, predicted)
    np.testing.assert_allclose(result.baseline_maps.numpy(), want_base, rtol=1e-10)
    want = _grad(a, w, x, predicted) - want_base
    np.testing.assert_allclose(result.maps.numpy(), want, rtol=1e-10)
    times = sal.saliency(
        model, torch.tensor(x), method="baseline_delta_x_input", baseline=torch.tensor(baseline)
    )
    np.testing.assert_allclose(times.numpy(), want * x, rtol=1e-10)


def test_integrated_gradients_of_a_quadratic_model(quadratic):
    # ∇f is linear along the path, so ∫₀¹∇f = (∇f(x) + ∇f(b)) / 2 exactly.
    model, x, a, w, predicted = quadratic
    baseline = np.full(6, 0.5)
    result = sal.attribute(
        model, torch.tensor(x), method="integrated_gradients", baseline=0.5, n_steps=3
    )
    base = np.broadcast_to(baseline, x.shape)
    mean_grad = (_grad(a, w, x, predicted) + _grad(a, w, base, predicted)) / 2
    np.testing.assert_allclose(result.maps.numpy(), (x - base) * mean_grad, rtol=1e-10)


def test_smoothgrad_noise_is_relative_to_each_samples_range():
    # f = ½Σx²: ∇f = x + noise, so one noisy sample shows the noise itself.
    class HalfSquare(torch.nn.Module):
        def forward(self, x):
            return 0.5 * (x**2).reshape(len(x), -1).sum(dim=1)

    rng = np.random.default_rng(6)
    x = np.stack([rng.uniform(0, 1, size=(4, 50, 50)), rng.uniform(-5, 15, size=(4, 50, 50))])
    ranges = x.reshape(2, -1).max(axis=1) - x.reshape(2, -1).min(axis=1)
    rng_state = torch.get_rng_state()
    maps = sal.saliency(HalfSquare(), torch.tensor(x), method="smoothgrad", n_samples=1)
    noise = (maps.numpy() - x).reshape(2, -1)
    np.testing.assert_allclose(noise.std(axis=1), 0.15 * ranges, rtol=0.03)
    assert np.all(np.abs(noise.mean(axis=1)) < 0.03 * 0.15 * ranges)
    # Seeded and private: the same noise each call, the global generator untouched.
    again = sal.saliency(HalfSquare(), torch.tensor(x), method="smoothgrad", n_samples=1)
    # Other noise would differ by about σ; the same noise agrees to the rounding of x + noise.
    rounding = 4 * np.finfo(np.float64).eps * np.abs(maps.numpy()).max()
    np.testing.assert_allclose(again.numpy(), maps.numpy(), rtol=0, atol=rounding)
    assert torch.equal(torch.get_rng_state(), rng_state)  # generator state: bytes, not floats
    other = sal.saliency(HalfSquare(), torch.tensor(x), method="smoothgrad", n_samples=1, seed=1)
    differs = np.abs(other.numpy() - maps.numpy()).reshape(2, -1).std(axis=1)
    assert np.all(differs > 0.1 * 0.15 * ranges)


def test_smoothgrad_averages_n_samples():
    # With ∇f = x + noise, the mean of n noisy gradients has noise std σ/√n.
    class HalfSquare(torch.nn.Module):
        def forward(self, x):
            return 0.5 * (x**2).sum(dim=1)

    x = torch.zeros(1, 40000, dtype=torch.float64)
    x[0, 0] = 1.0  # range 1: σ = 0.15
    maps = sal.saliency(HalfSquare(), x, method="smoothgrad", n_samples=16, batch_size=5)
    assert maps.numpy().std() == pytest.approx(0.15 / 4, rel=0.03)


# ---- integrated gradients, nonlinear net


def _brute_force_integral(model, x, targets, alphas, weights):
    """Σ_k w_k ∇f(α_k x): one plain autograd call per path point (baseline zero)."""
    total = 0.0
    for alpha, weight in zip(alphas, weights):
        point = (float(alpha) * x).requires_grad_(True)
        score = model(point)[torch.arange(len(x)), torch.as_tensor(targets)].sum()
        total = total + weight * torch.autograd.grad(score, point)[0].double().numpy()
    return total


def test_integrated_gradients_completeness_within_one_percent_at_64_steps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 32),
        torch.nn.Softplus(),
        torch.nn.Linear(32, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 4),
    )
    x = torch.randn(6, 10) * 2
    result = sal.attribute(model, x, method="integrated_gradients", n_steps=64)
    with torch.no_grad():
        scores = model(x).double().numpy()
        base_scores = model(torch.zeros(1, 10)).double().numpy()[0]
    targets = scores.argmax(axis=1)
    gain = scores[np.arange(6), targets] - base_scores[targets]
    total = result.maps.double().numpy().sum(axis=1)
    assert np.all(np.abs(total - gain) <= 0.01 * np.abs(gain))
    np.testing.assert_allclose(result.completeness_error.numpy(), total - gain, atol=1e-5)
    # The integral itself, against a 257-point trapezoid sum (its own error is O(1/257²)).
    alphas = np.linspace(0, 1, 257)
    weights = np.full(257, 1 / 256)
    weights[[0, -1]] /= 2
    integral = _brute_force_integral(model, x, targets, alphas, weights)
    np.testing.assert_allclose(result.maps.numpy(), x.numpy() * integral, atol=1e-4)


def test_integrated_gradients_on_a_relu_net_reports_its_quadrature_error():
    # ReLU nets have a piecewise-constant gradient along the path: quadrature
    # error O(1/n), reported per sample rather than hidden.
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.randn(5, 10)
    result = sal.attribute(model, x, method="integrated_gradients", n_steps=16, batch_size=7)
    alphas, weights = np.polynomial.legendre.leggauss(16)
    targets = result.targets.numpy()
    integral = _brute_force_integral(model, x, targets, (alphas + 1) / 2, weights / 2)
    np.testing.assert_allclose(result.maps.numpy(), x.numpy() * integral, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        gain = model(x)[np.arange(5), targets] - model(torch.zeros(1, 10))[0, targets]
    reported = result.completeness_error.numpy()
    np.testing.assert_allclose(reported, result.maps.sum(dim=1) - gain, atol=1e-5)


def test_path_points_integrate_polynomials():
    for rule, n, degree in [("gauss_legendre", 4, 7), ("trapezoid", 2, 1), ("midpoint", 1, 1)]:
        alphas, weights = path_points(n, rule)
        assert np.all((0 <= alphas) & (alphas <= 1))
        assert weights.sum() == pytest.approx(1.0)
        assert np.sum(weights * alphas**degree) == pytest.approx(1 / (degree + 1))
    with pytest.raises(ValueError, match="unknown integration rule"):
        path_points(8, "simpson")


# ---- occlusion


class LooksAtOnePatch(torch.nn.Module):
    """Class scores from rows 2:4, columns 4:6 of an 8×8 image only (all channels)."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(7)
        self.v = torch.nn.Parameter(torch.tensor(rng.uniform(0.5, 1.5, size=(3, 2, 2, 2))))
        self.c = torch.nn.Parameter(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x):
        return torch.einsum("nkij,ckij->nc", x[:, :, 2:4, 4:6], self.v) + self.c


def _reference_occlusion(model, x, window, stride, fill):
    """Brute force in numpy: hide each window in turn, average the drops over covering windows."""
    v, c = model.v.detach().numpy(), model.c.detach().numpy()

    def scores(images):
        return np.einsum("nkij,ckij->nc", images[:, :, 2:4, 4:6], v) + c

    clean = scores(x)
    target = clean.argmax(axis=1)
    total, count = np.zeros_like(x), np.zeros(x.shape[1:])
    starts = sorted({*range(0, 8 - window + 1, stride), 8 - window})
    for i in starts:
        for j in starts:
            hidden = x.copy()
            hidden[:, :, i : i + window, j : j + window] = fill
            drop = clean[np.arange(len(x)), target] - scores(hidden)[np.arange(len(x)), target]
            total[:, :, i : i + window, j : j + window] += drop[:, None, None, None]
            count[:, i : i + window, j : j + window] += 1
    return total / count


def test_occlusion_finds_the_one_patch_a_model_looks_at():
    model = LooksAtOnePatch().double()
    x = np.random.default_rng(8).uniform(0.5, 1.0, size=(3, 2, 8, 8))
    maps = sal.saliency(model, torch.tensor(x), method="occlusion", window=2).numpy()
    patch = np.zeros((8, 8), dtype=bool)
    patch[2:4, 4:6] = True
    # Outside the patch a drop is f(x) − f(x with an unseen window hidden): zero up to
    # the rounding of two evaluations of the score (the order of a vectorised sum may
    # differ between them, e.g. on AVX-512: ±8.9e-16 was seen), a few ulps of its scale.
    with torch.no_grad():
        scale = float(model(torch.tensor(x)).abs().max())
    rounding = 8 * np.finfo(maps.dtype).eps * scale
    assert np.all(np.abs(maps[:, :, ~patch]) <= rounding)
    # The patch dominates: positive inputs and weights, so hiding it lowers the score,
    # by far more than any rounding.
    assert np.all(maps[:, :, patch] > 1e6 * rounding)
    reference = _reference_occlusion(model, x, 2, 2, 0.0)
    np.testing.assert_allclose(maps, reference, rtol=1e-12, atol=rounding)  # 0s: the rounding


@pytest.mark.parametrize("window,stride,batch_size", [(3, 1, None), (3, 2, 4), (5, 4, 1)])
def test_occlusion_with_overlapping_windows_matches_brute_force(window, stride, batch_size):
    model = LooksAtOnePatch().double()
    x = np.random.default_rng(9).normal(size=(3, 2, 8, 8))
    maps = sal.saliency(
        model,
        torch.tensor(x),
        method="occlusion",
        window=window,
        stride=stride,
        baseline_value=0.25,
        batch_size=batch_size,
    )
    want = _reference_occlusion(model, x, window, stride, 0.25)
    np.testing.assert_allclose(maps.numpy(), want, rtol=1e-10, atol=1e-12)


def test_window_starts_cover_the_far_edge():
    assert window_starts(7, 3, 3) == [0, 3, 4]
    assert window_starts(8, 2, 2) == [0, 2, 4, 6]
    assert window_starts(5, 5, 1) == [0]


def test_occlusion_window_errors():
    model = LooksAtOnePatch().double()
    x = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not fit"):
        sal.saliency(model, x, method="occlusion", window=9)
    with pytest.raises(ValueError, match="stride"):
        sal.saliency(model, x, method="occlusion", window=2, stride=0)


# ---- guided backprop


class TinyReluNet(torch.nn.Module):
    """x → W1 → ReLU(inplace) → W2 → the same ReLU again → W3: three classes."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.fc2 = torch.nn.Linear(6, 5)
        self.fc3 = torch.nn.Linear(5, 3)
        self.relu = torch.nn.ReLU(inplace=True)

    def forward(self, x):
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


def test_guided_backprop_matches_a_hand_computation():
    torch.manual_seed(3)
    model = TinyReluNet().double()
    x = np.random.default_rng(10).normal(size=(8, 4))
    p = {n: t.detach().numpy() for n, t in model.named_parameters()}
    z1 = x @ p["fc1.weight"].T + p["fc1.bias"]
    z2 = np.maximum(z1, 0) @ p["fc2.weight"].T + p["fc2.bias"]
    scores = np.maximum(z2, 0) @ p["fc3.weight"].T + p["fc3.bias"]
    target = scores.argmax(axis=1)
    # Guided: at each ReLU keep positive gradients where its input was positive.
    r2 = np.maximum(p["fc3.weight"][target], 0) * (z2 > 0)
    r1 = np.maximum(r2 @ p["fc2.weight"], 0) * (z1 > 0)
    guided = r1 @ p["fc1.weight"]
    plain = ((p["fc3.weight"][target] * (z2 > 0)) @ p["fc2.weight"] * (z1 > 0)) @ p["fc1.weight"]
    assert not np.allclose(guided, plain)  # the test can tell them apart

    result = sal.attribute(model, torch.tensor(x), method="guided_backprop")
    np.testing.assert_allclose(result.maps.numpy(), guided, rtol=1e-10, atol=1e-14)
    assert result.options["relu_calls"] == 2  # the shared ReLU module, guided at both calls
    gradient = sal.saliency(model, torch.tensor(x), method="gradient")
    np.testing.assert_allclose(gradient.numpy(), plain, rtol=1e-10, atol=1e-14)


def test_guided_backprop_with_an_out_of_place_relu_in_a_conv_net():
    torch.manual_seed(4)
    conv = torch.nn.Conv2d(1, 2, 3)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    model = model.double()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    result = sal.attribute(model, x, method="guided_backprop")
    # By hand: the guided gradient at the conv output, back through the conv alone.
    with torch.no_grad():
        z = conv(x)
        head = model[3].weight[result.targets].reshape(3, 2, 2, 2)
    r = head.clamp(min=0) * (z > 0)
    point = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(conv(point), point, grad_outputs=r)
    np.testing.assert_allclose(result.maps.numpy(), want.numpy(), rtol=1e-10, atol=1e-14)


class FunctionalRelu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.fc2 = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.nn.functional.relu(self.fc1(x)))


def test_guided_backprop_refuses_functional_relus_and_relu_free_models():
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="ReLU as a function .* 1 time"):
        sal.saliency(FunctionalRelu(), x, method="guided_backprop")
    model = FunctionalRelu()
    with pytest.warns(RuntimeWarning, match="ReLU as a function"):
        maps = sal.saliency(model, x, method="guided_backprop", strict=False)
    torch.testing.assert_close(maps, sal.saliency(model, x, method="gradient"))
    tanh_net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    with pytest.raises(ValueError, match="no nn.ReLU module"):
        sal.saliency(tanh_net, x, method="guided_backprop")


# ---- the memory bound


@pytest.mark.parametrize(
    "method,options,rows",
    [
        ("integrated_gradients", {"n_steps": 5}, 4 * 5),
        ("smoothgrad", {"n_samples": 5}, 4 * 5),
        ("occlusion", {"window": (2, 2), "stride": 2}, 4 * 2 * 3),  # 2 x 3 positions on 4 x 5
    ],
)
def test_batched_methods_keep_each_pass_within_batch_size(method, options, rows):
    model = Linear().double()
    sizes = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    sal.saliency(model, torch.tensor(_data(model.shape)), method=method, batch_size=3, **options)
    clean = [4, 1] if method == "integrated_gradients" else [4]  # f(x) (and f(baseline))
    assert sizes[: len(clean)] == clean
    assert all(size <= 3 for size in sizes[len(clean) :])
    assert sum(sizes[len(clean) :]) == rows


def test_the_module_docstring_lists_every_method_and_says_how_many():
    """The docstring's method table and its count come from the registry, not a number typed in."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    doc = sal.__doc__
    assert f"by {words[len(sal.METHODS)]} attribution methods" in doc.splitlines()[0]
    table = doc.split("Methods (options in their own modules):")[1].split("\n\n")[0]
    listed = [line.split()[0] for line in table.strip().splitlines()]
    assert listed == list(sal.METHODS)
