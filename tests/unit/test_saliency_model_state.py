"""Saliency leaves the model as it found it, touches no parameter's .grad, and rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.analysis import saliency as sal

ALL_METHODS = list(sal.METHODS)


class Net(torch.nn.Module):
    """conv → batch norm → ReLU(inplace) → dropout → linear: all the state a call could touch."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.relu = torch.nn.ReLU(inplace=True)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.head(self.drop(self.relu(self.norm(self.conv(x)))).flatten(1))


def _snapshot(model):
    """Everything a saliency call must leave as it was."""
    return {
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [
            (n, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()
        ],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": [
            (
                name,
                list(m._forward_hooks),
                list(m._forward_pre_hooks),
                list(m._backward_hooks),
                list(m._backward_pre_hooks),
            )
            for name, m in model.named_modules()
        ],
    }


def _assert_same(before, after):
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    for (name, want), (_, got) in zip(before["grads"], after["grads"]):
        assert (got is None) == (want is None), name
        if want is not None:
            assert torch.equal(got, want), name
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = Net()
    net.train()
    net.conv.bias.requires_grad_(False)  # a frozen parameter stays frozen
    net.head.weight.grad = torch.ones_like(net.head.weight)  # a gradient from training stays
    calls = []
    net.head.register_forward_hook(lambda module, args, output: calls.append(1))
    net.calls = calls
    return net


@pytest.mark.parametrize("method", ALL_METHODS)
def test_model_state_is_as_before(model, method):
    x = torch.randn(3, 2, 6, 6)
    x_copy = x.clone()
    before = _snapshot(model)
    result = sal.attribute(model, x, method=method)
    assert result.maps.shape == x.shape
    assert model.calls  # the user's hook ran during the call...
    _assert_same(before, _snapshot(model))  # ...and is the only one left
    assert torch.equal(x, x_copy)
    assert not x.requires_grad


def test_eval_mode_during_the_call_and_its_opt_out(model):
    seen = []
    model.norm.register_forward_hook(lambda module, args, output: seen.append(module.training))
    sal.saliency(model, torch.randn(2, 2, 6, 6))
    assert seen == [False] and model.training
    sal.saliency(model, torch.randn(2, 2, 6, 6), eval_mode=False)
    assert seen == [False, True] and model.training


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "integrated_gradients"])
def test_model_state_is_as_before_after_an_error(model, method):
    before = _snapshot(model)
    with pytest.raises(ValueError, match="out of range"):
        sal.saliency(model, torch.randn(2, 2, 6, 6), target=7, method=method)
    _assert_same(before, _snapshot(model))

    class Explodes(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model.head = torch.nn.Sequential(model.head, Explodes())
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        sal.saliency(model, torch.randn(2, 2, 6, 6), method=method)
    _assert_same(before, _snapshot(model))


def test_model_that_changes_its_input_in_place():
    class Normalizes(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            x.sub_(1.0)  # in place, on the input
            return self.fc(x)

    model = Normalizes()
    x = torch.randn(4, 3)
    x_copy = x.clone()
    maps = sal.saliency(model, x, target=1)
    assert torch.equal(x, x_copy)
    np.testing.assert_allclose(maps.numpy(), model.fc.weight[1].detach().expand(4, 3).numpy())


# ---- bad input


def _linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_integer_inputs_are_refused(method):
    with pytest.raises(TypeError, match="floating-point inputs.*inputs.float"):
        sal.saliency(_linear(), torch.ones(2, 8, dtype=torch.int64), method=method)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("target", [3, -1, [0, 5]])
def test_target_out_of_range(method, target):
    with pytest.raises(
        ValueError, match=r"out of range for a model with 3 outputs \(valid: 0 to 2\)"
    ):
        sal.saliency(_linear(), torch.randn(2, 8), target=target, method=method)


def test_bad_target_types_and_shapes():
    with pytest.raises(TypeError, match="integer class indices"):
        sal.saliency(_linear(), torch.randn(2, 8), target=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"one per sample \(2\)"):
        sal.saliency(_linear(), torch.randn(2, 8), target=[0, 1, 2])


def test_other_bad_input():
    with pytest.raises(
        ValueError, match="unknown saliency method 'gradcam'; choose one of gradient"
    ):
        sal.saliency(_linear(), torch.randn(2, 8), method="gradcam")
    with pytest.raises(TypeError, match="torch.Tensor"):
        sal.saliency(_linear(), np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"inputs\[None\]"):
        sal.saliency(_linear(), torch.randn(8))
    with pytest.raises(TypeError, match="nn.Module"):
        sal.saliency(lambda x: x, torch.randn(2, 8))

    class ReturnsText(torch.nn.Module):
        def forward(self, x):
            return "scores"

    with pytest.raises(TypeError, match="returned a str; saliency reads class scores from"):
        sal.saliency(ReturnsText(), torch.randn(2, 8))
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_step'"):
        sal.saliency(_linear(), torch.randn(2, 8), method="integrated_gradients", n_step=3)


class Detaches(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc(x.detach().round()))


@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m != "occlusion"])
def test_no_differentiable_path_is_a_clear_error(method):
    with pytest.raises(sal.NoGradientPathError, match="use method='occlusion'"):
        sal.saliency(Detaches(), torch.randn(2, 8), method=method)


def test_occlusion_needs_no_gradient_path():
    maps = sal.saliency(Detaches(), torch.randn(2, 8) * 3, method="occlusion", window=1)
    assert maps.shape == (2, 8) and torch.isfinite(maps).all()


def test_non_finite_maps_are_counted_and_warned_not_hidden():
    class LogNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.sqrt(x))  # ∂√x/∂x = ∞ at 0

    x = torch.tensor([[0.0, 1.0, 4.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
    result = sal.attribute(LogNet(), x, target=0)
    assert result.non_finite == 1
    assert not torch.isfinite(result.maps[0, 0])
    with pytest.warns(RuntimeWarning, match="1 map value"):
        maps = sal.saliency(LogNet(), x, target=0)
    assert torch.isinf(maps[0, 0])  # kept as computed
